package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestClientBuildsWithoutCDK: a program that only imports the client must not pull the
// CDK or jsii into its build (the CDK modules are in go.mod for infra alone).
func TestClientBuildsWithoutCDK(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-deps", "./client/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./client/...: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps ./client/... listed only %v", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{"aws-cdk-go", "jsii-runtime-go", "constructs-go", "cdk-nag"} {
			if strings.Contains(d, bad) {
				t.Errorf("the client's build depends on %s", d)
			}
		}
	}
}
