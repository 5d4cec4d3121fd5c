package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// sealedStore opens a store that seals with the site's run key, unwrapped by KMS.
func sealedStore(t *testing.T, name string) *client.Store {
	t.Helper()
	ctx := context.Background()
	keys, err := kmskeys.Parse(theSite.Stack.SealKeys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := kmskeys.Unwrap(ctx, kms.NewFromConfig(theSite.AWS), keys, theSite.SealKeyARN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.Open(ctx, client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: name, AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), JournalDir: t.TempDir(), Keyring: ring,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestGetSealedValues: get names the key of each sealed value; with --values it opens
// them with the environment's keyring, or says why it cannot: no keyring, a key the
// keyring lacks, a value changed since it was sealed.
func TestGetSealedValues(t *testing.T) {
	ctx := context.Background()
	a, b := sealedStore(t, "ctl-seal-a"), sealedStore(t, "ctl-seal-b")
	value := secret("token-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	id := create(t, a, b, "sam", map[string][]byte{"token": []byte(value), "theme": []byte("dark")})
	changes := map[string]string{}
	for _, l := range theSite.SealEnv() {
		k, v, _ := strings.Cut(l, "=")
		changes[k] = v
	}
	sealEnv := envFile(t, changes)
	keyID, _, _ := strings.Cut(theSite.Stack.SealKeys, ":")

	r := ctlIn(t, nil, "", "--env-file", sealEnv, "get", id)
	expect(t, r, 0, "token", "sealed by "+keyID, "theme")
	r = ctlIn(t, nil, "", "--env-file", sealEnv, "get", "--values", id)
	expect(t, r, 0, strconv.Quote(value), `"dark"`, "sealed by "+keyID)

	noValue := func(r result) {
		t.Helper()
		if strings.Contains(r.stdout+r.stderr, value) {
			t.Fatalf("the value shows though it does not open:\n%s", r)
		}
	}
	r = ctl(t, "get", "--values", id) // site.env without the seal variables
	expect(t, r, 0, "sealed by "+keyID, "cannot open: no keyring")
	noValue(r)
	other := "other:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	r = ctlIn(t, nil, "", "--env-file", envFile(t, map[string]string{client.EnvSealKeys: other}), "get", "--values", id)
	expect(t, r, 0, "cannot open: attribute \"token\": sealed with key "+keyID+", which this store's keyring lacks (it opens other)")
	noValue(r)

	// Change one byte of the stored value in the table.
	db := dynamodb.NewFromConfig(theSite.AWS)
	key := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: record.Key("default", events.HashID(id))}}
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(theSite.Outputs.Table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	attrs := got.Item["a"].(*ddbtypes.AttributeValueMemberM).Value
	stored := bytes.Clone(attrs["token"].(*ddbtypes.AttributeValueMemberB).Value)
	stored[len(stored)-3] ^= 1
	attrs["token"] = &ddbtypes.AttributeValueMemberB{Value: stored}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(theSite.Outputs.Table), Item: got.Item}); err != nil {
		t.Fatal(err)
	}
	r = ctlIn(t, nil, "", "--env-file", sealEnv, "get", "--values", id)
	expect(t, r, 0, "cannot open: attribute \"token\": does not open with key "+keyID+": changed since it was sealed", `"dark"`)
	noValue(r)

	r = ctl(t, "seal-key", "usage")
	expect(t, r, 0, "KEY", keyID, "live sessions in cluster default")

	// A keyring KMS will not unwrap: get --values says so; destroy needs no keyring.
	broken := envFile(t, map[string]string{client.EnvSealKMSKeyARN: theSite.SealKeyARN, client.EnvSealKMSKeys: "k9:" + theSite.AWS.Region + "=AAAA"})
	r = ctlIn(t, nil, "", "--env-file", broken, "get", "--values", id)
	expect(t, r, 0, "cannot open: no keyring: key k9: KMS Decrypt")
	noValue(r)
	r = ctlIn(t, nil, "", "--env-file", broken, "destroy", id)
	expect(t, r, 0, "session destroyed")
}

// TestSealKeyNew: a local key parses as a keyring; a KMS key, made with the site's seal
// key, unwraps with it.
func TestSealKeyNew(t *testing.T) {
	r := ctl(t, "seal-key", "new", "--id", "k7")
	expect(t, r, 0, "k7:")
	if k, err := client.ParseKeyring(strings.TrimSpace(r.stdout)); err != nil || k.SealingKey() != "k7" {
		t.Fatalf("the printed key: %v %v", k, err)
	}
	r = ctl(t, "seal-key", "new", "--id", "k8", "--kms-key", theSite.SealKeyARN)
	expect(t, r, 0, "k8:"+theSite.AWS.Region+"=")
	keys, err := kmskeys.Parse(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kmskeys.Unwrap(context.Background(), kms.NewFromConfig(theSite.AWS), keys, theSite.SealKeyARN); err != nil {
		t.Fatalf("the KMS key does not unwrap: %v", err)
	}
	expect(t, ctl(t, "seal-key", "new"), 2)
	expect(t, ctl(t, "seal-key", "new", "--id", "bad id"), 2)
	expect(t, ctl(t, "seal-key"), 2)
}
