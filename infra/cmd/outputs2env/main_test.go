package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	doc := `{"sessionha-eu": {"SessionhaSite": "eu", "SessionhaTable": "t", "AwsRegion": "eu-west-1",
	  "SessionhaOpsTopicArn": "a1", "SessionhaQueryTopicArn": "a2", "SessionhaReplyTopicArn": "a3",
	  "SessionhaNoticeTopicArn": "a4", "SessionhaAuthPolicyArn": "p"}}`
	path := filepath.Join(t.TempDir(), "cdk-outputs.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var fromFile, fromStdin bytes.Buffer
	if err := run(path, "eu", nil, &fromFile); err != nil {
		t.Fatal(err)
	}
	if err := run("-", "", strings.NewReader(doc), &fromStdin); err != nil {
		t.Fatal(err)
	}
	if fromFile.String() != fromStdin.String() {
		t.Errorf("file and stdin differ:\n%s\n%s", fromFile.String(), fromStdin.String())
	}
	out := fromFile.String()
	for _, want := range []string{"\nAWS_REGION=eu-west-1\n", "\nSESSIONHA_REPLY_TOPIC_ARN=a3\n", "\nSESSIONHA_TABLE=t\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err := run(path, "us", nil, &bytes.Buffer{}); err == nil {
		t.Error("a missing site was accepted")
	}
}
