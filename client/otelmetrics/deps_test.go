package otelmetrics_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	d := strings.Fields(string(out))
	if len(d) < 10 {
		t.Fatalf("go list -deps %s listed only %v", pkg, d)
	}
	return d
}

// TestClientBuildsWithoutOTel: a program that imports the client (or its web adapters)
// and not this package pulls no OpenTelemetry into its build; this package pulls the
// API only, never the SDK or an exporter, which the application chooses.
func TestClientBuildsWithoutOTel(t *testing.T) {
	for _, pkg := range []string{
		"github.com/sessionha/sessionha/client",
		"github.com/sessionha/sessionha/client/httpsession",
		"github.com/sessionha/sessionha/client/scsstore",
		"github.com/sessionha/sessionha/client/gorillastore",
	} {
		for _, d := range deps(t, pkg) {
			if strings.HasPrefix(d, "go.opentelemetry.io/") {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
	api := false
	for _, d := range deps(t, "github.com/sessionha/sessionha/client/otelmetrics") {
		api = api || d == "go.opentelemetry.io/otel/metric"
		if strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(d, "go.opentelemetry.io/otel/exporters") {
			t.Errorf("otelmetrics depends on %s: the SDK and the exporter are the application's choice", d)
		}
	}
	if !api {
		t.Error("otelmetrics does not depend on go.opentelemetry.io/otel/metric: the check above would prove nothing")
	}
}
