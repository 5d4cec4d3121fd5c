package kmskeys_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/kmskeys"
	"github.com/sessionha/sessionha/local/edge"
	localkms "github.com/sessionha/sessionha/local/kms"
)

// region is one region's KMS stand-in behind an edge that routes by SigV4 region, as
// the local stack does: the SDK's clients reach it as they would reach AWS.
type regions struct {
	cfg  aws.Config // region unset: set per client
	arns map[string]string
}

func start(t *testing.T, names ...string) *regions {
	t.Helper()
	ctx := context.Background()
	var routes []edge.Route
	for _, r := range names {
		h, err := localkms.New(r).Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		routes = append(routes, edge.Route{Service: "kms", Region: r, URL: h.URL()})
	}
	gw, err := edge.NewGateway(edge.Options{Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.Listen("127.0.0.1:0", gw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	rs := &regions{cfg: aws.Config{BaseEndpoint: aws.String(srv.URL()), Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")},
		arns: map[string]string{}}
	for _, r := range names {
		out, err := rs.api(r).(*kms.Client).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("seal " + r)})
		if err != nil {
			t.Fatal(err)
		}
		rs.arns[r] = aws.ToString(out.KeyMetadata.Arn)
	}
	return rs
}

func (rs *regions) api(r string) kmskeys.API {
	c := rs.cfg.Copy()
	c.Region = r
	return kms.NewFromConfig(c)
}

// TestAKeyMadeInOneRegionOpensInEvery: one data key wrapped for two regions; each
// region's instances unwrap their own blob and open what the other sealed.
func TestAKeyMadeInOneRegionOpensInEvery(t *testing.T) {
	ctx := context.Background()
	rs := start(t, "eu-west-1", "us-east-1")
	w, err := kmskeys.NewKey(ctx, "k1", []string{rs.arns["eu-west-1"], rs.arns["us-east-1"]}, rs.api)
	if err != nil {
		t.Fatal(err)
	}
	spec := kmskeys.Format([]kmskeys.WrappedKey{w})
	if !strings.HasPrefix(spec, "k1:eu-west-1=") || !strings.Contains(spec, "/us-east-1=") || strings.ContainsAny(spec, ";+ ") {
		t.Fatalf("entry %q", spec)
	}
	keys, err := kmskeys.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	ring := func(r string) *client.Keyring {
		src, err := kmskeys.Source(keys, rs.arns[r])
		if err != nil {
			t.Fatal(err)
		}
		k, err := src.Keyring(ctx, &rs.cfg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	eu, us := ring("eu-west-1"), ring("us-east-1")
	sealed, err := eu.Seal("default", "an-id", "roles", []byte("admin"))
	if err != nil {
		t.Fatal(err)
	}
	v, id, err := us.Open("default", "an-id", "roles", sealed)
	if err != nil || string(v) != "admin" || id != "k1" {
		t.Fatalf("us opens eu's value: %q %q %v", v, id, err)
	}

	// A blob relabelled as another key id does not unwrap: the id is in its context.
	relabelled := []kmskeys.WrappedKey{{ID: "k2", Blobs: w.Blobs}}
	_, err = kmskeys.Unwrap(ctx, rs.api("eu-west-1"), relabelled, rs.arns["eu-west-1"])
	if err == nil || !strings.Contains(err.Error(), "key k2") || !strings.Contains(err.Error(), "InvalidCiphertextException") {
		t.Errorf("a relabelled blob: %v", err)
	}
	// Another region's seal key does not unwrap this region's blob.
	_, err = kmskeys.Unwrap(ctx, rs.api("us-east-1"), []kmskeys.WrappedKey{{ID: "k1", Blobs: map[string][]byte{"us-east-1": w.Blobs["eu-west-1"]}}}, rs.arns["us-east-1"])
	if err == nil {
		t.Error("us-east-1 unwrapped eu-west-1's blob")
	}

	// A third site: Wrap adds its blob; the data key is the same.
	rs3 := start(t, "ap-south-1")
	both := func(r string) kmskeys.API {
		if r == "ap-south-1" {
			return rs3.api(r)
		}
		return rs.api(r)
	}
	w3, err := kmskeys.Wrap(ctx, w, rs.arns["eu-west-1"], []string{rs3.arns["ap-south-1"]}, both)
	if err != nil {
		t.Fatal(err)
	}
	k3, err := kmskeys.Unwrap(ctx, rs3.api("ap-south-1"), []kmskeys.WrappedKey{w3}, rs3.arns["ap-south-1"])
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := k3.Open("default", "an-id", "roles", sealed); err != nil || string(v) != "admin" {
		t.Errorf("the third site opens the value: %q %v", v, err)
	}
}

// TestConfigFromEnvWithKMS: importing the package makes ConfigFromEnv read the KMS
// variables, and Open unwraps the keys; a store seals with them.
func TestConfigFromEnvWithKMS(t *testing.T) {
	ctx := context.Background()
	rs := start(t, "eu-west-1")
	arn := rs.arns["eu-west-1"]
	k2, err := kmskeys.NewKey(ctx, "k2", []string{arn}, rs.api)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := kmskeys.NewKey(ctx, "k1", []string{arn}, rs.api)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.EnvSealKMSKeys, kmskeys.Format([]kmskeys.WrappedKey{k2, k1}))
	t.Setenv(client.EnvSealKMSKeyARN, arn)
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeyringSource == nil || cfg.Keyring != nil {
		t.Fatalf("source %v, keyring %v", cfg.KeyringSource, cfg.Keyring)
	}
	cfg.Persistence, cfg.Dir, cfg.AWS = client.PersistenceFile, t.TempDir(), &rs.cfg
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := client.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sess, err := s.Create(ctx, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"a": []byte("b")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, sess.ID()); err != nil {
		t.Fatal(err)
	} else if v, _ := got.Get("a"); !bytes.Equal(v, []byte("b")) {
		t.Errorf("a = %q", v)
	}

	for _, c := range []struct{ keys, arn, want string }{
		{kmskeys.Format([]kmskeys.WrappedKey{k2}), "", client.EnvSealKMSKeyARN},
		{kmskeys.Format([]kmskeys.WrappedKey{k2}), "arn:aws:kms:us-east-1:000000000000:key/x", "no blob for us-east-1"},
		{kmskeys.Format([]kmskeys.WrappedKey{k2}), "not-an-arn", "not the ARN of a KMS key"},
		{"k2", arn, "entry 1"},
		{"k2:eu-west-1=***", arn, "not base64url"},
	} {
		t.Setenv(client.EnvSealKMSKeys, c.keys)
		t.Setenv(client.EnvSealKMSKeyARN, c.arn)
		_, err := client.ConfigFromEnv()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%.30s… %s=%s: %v, want %q", client.EnvSealKMSKeys, c.keys, client.EnvSealKMSKeyARN, c.arn, err, c.want)
		}
	}
	// KMS out of reach at Open: Open fails, naming the variable.
	t.Setenv(client.EnvSealKMSKeys, kmskeys.Format([]kmskeys.WrappedKey{k2}))
	t.Setenv(client.EnvSealKMSKeyARN, arn)
	cfg, err = client.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	dead := rs.cfg.Copy()
	dead.BaseEndpoint = aws.String("http://127.0.0.1:1")
	dead.RetryMaxAttempts = 1
	cfg.Persistence, cfg.Dir, cfg.AWS, cfg.Logger = client.PersistenceFile, t.TempDir(), &dead, slog.New(slog.DiscardHandler)
	if _, err := client.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), client.EnvSealKMSKeys) {
		t.Errorf("Open with KMS out of reach: %v", err)
	}
	if errors.Is(err, client.ErrSealed) {
		t.Errorf("KMS out of reach is not a sealed value that does not open: %v", err)
	}
}
