package client

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestClientLinksNoKMS: a program that imports only the client links no KMS client
// (client/kmskeys brings it, for those who seal with KMS), and neither the CDK nor jsii.
func TestClientLinksNoKMS(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{"aws-sdk-go-v2/service/kms", "aws-cdk-go", "jsii-runtime-go", "client/kmskeys"} {
			if strings.Contains(d, bad) {
				t.Errorf("the client depends on %s", d)
			}
		}
	}
}
