package lambdaenv

import (
	"context"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	if _, err := Config(); err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Errorf("without a region: %v", err)
	}
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	if _, err := Config(); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("without credentials: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "token")
	t.Setenv("AWS_ENDPOINT_URL", "")
	cfg, err := Config()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKID" || creds.SessionToken != "token" || cfg.Region != "eu-west-1" || cfg.BaseEndpoint != nil {
		t.Errorf("config %+v, credentials %+v, %v", cfg, creds, err)
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
	if cfg, _ := Config(); cfg.BaseEndpoint == nil || *cfg.BaseEndpoint != "http://127.0.0.1:4566" {
		t.Errorf("endpoint not taken: %+v", cfg)
	}
}
