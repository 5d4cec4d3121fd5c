package provision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/infra/topology"
	localkms "github.com/sessionha/sessionha/local/kms"
	"github.com/sessionha/sessionha/local/provision"
)

// TestSealKeyIsIdempotent: the site's seal key is made once, under its alias.
func TestSealKeyIsIdempotent(t *testing.T) {
	ctx := context.Background()
	h, err := localkms.New("eu-west-1").Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	k := kms.New(kms.Options{Region: "eu-west-1", BaseEndpoint: aws.String(h.URL()), Credentials: credentials.NewStaticCredentialsProvider("t", "t", "")})
	topo, err := topology.For(topology.Site{Name: "seal", Region: "eu-west-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := provision.SealKey(ctx, topo, k)
	if err != nil {
		t.Fatal(err)
	}
	second, err := provision.SealKey(ctx, topo, k)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || !strings.HasPrefix(first, "arn:aws:kms:eu-west-1:") {
		t.Fatalf("first %s, second %s: want one key", first, second)
	}
	d, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/sessionha-seal-seal")})
	if err != nil || aws.ToString(d.KeyMetadata.Arn) != first {
		t.Fatalf("the alias names %v (%v), want %s", d, err, first)
	}
}
