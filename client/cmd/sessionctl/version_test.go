package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
)

// stampedBuild is what `go version -m` (the toolchain, not our code) reads from a binary:
// the main module's version and the vcs.revision setting ("" if none).
func stampedBuild(t *testing.T, bin string) (version, revision string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			version = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	return version, revision
}

// checkoutHead is the commit of the module's git checkout, or "" where Go stamps none: no
// git, or no .git directory (a tarball, or a git worktree, whose .git is a file).
func checkoutHead(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		t.Logf("%s is not a git checkout with a .git directory: Go stamps no commit", root)
		return ""
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Logf("git rev-parse HEAD: %v: Go stamps no commit", err)
		return ""
	}
	return strings.TrimSpace(string(head))
}

// TestVersion: sessionctl version prints the module version, the commit and the Go
// version stamped in the binary (as the toolchain reads them), with no configuration at
// all; in a git checkout the commit is HEAD's. The functions of the site, built from the
// same checkout, log the same build as their first line.
func TestVersion(t *testing.T) {
	r := ctlIn(t, nil, "", "version")
	expect(t, r, 0, "sessionctl\n", "  module  github.com/sessionha/sessionha ", "  commit  ", "  go      "+runtime.Version()+" ")
	fields := map[string][]string{}
	for _, l := range strings.Split(r.stdout, "\n")[1:] {
		if f := strings.Fields(l); len(f) >= 2 {
			fields[f[0]] = f[1:]
		}
	}
	version, revision := stampedBuild(t, ctlBin)
	if got := fields["module"]; len(got) != 2 || got[1] != version {
		t.Errorf("module line %v, want the stamped version %q:\n%s", got, version, r.stdout)
	}
	wantCommit := revision
	if wantCommit == "" {
		wantCommit = "unknown"
	}
	if got := fields["commit"]; len(got) == 0 || got[0] != wantCommit {
		t.Errorf("commit line %v, want %q:\n%s", got, wantCommit, r.stdout)
	}
	if head := checkoutHead(t); head != "" && revision != head {
		t.Errorf("built in a git checkout at %s, but the binary carries commit %q: is -buildvcs=auto passed?", head, revision)
	}
	if r := ctlIn(t, nil, "", "version", "extra"); r.code != 2 {
		t.Errorf("version with an argument:\n%s", r)
	}

	// Each function logs its build once, at start: make both run.
	ctx := context.Background()
	w := openStore(t, "ctl-version-w", "")
	q, err := client.Open(ctx, client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		QueryTopicARN: theSite.Outputs.TopicARNs[topology.TopicQuery], ReplyTopicARN: theSite.Outputs.TopicARNs[topology.TopicReply],
		ReadPath: client.ReadBus, InstanceID: "ctl-version-q", AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler),
		JournalDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	create(t, w, q, "vera", nil) // q reads it over the bus: sessionop and sessionquery both ran

	logPath := filepath.Join(tmpDir, "run", "logs", "functions.log")
	eventually(t, "both functions logged their build", func() (bool, string) {
		lines := buildLines(t, logPath)
		for _, fn := range []string{"sessionop", "sessionquery"} {
			l, ok := lines[fn]
			if !ok {
				return false, fmt.Sprintf("no build line of %s in %s", fn, logPath)
			}
			if l["commit"] != wantCommit || l["version"] != version || l["module"] != "github.com/sessionha/sessionha" || l["go"] != runtime.Version() {
				t.Fatalf("%s logged %v; want commit %q, version %q, go %s as sessionctl (built from the same checkout)", fn, l, wantCommit, version, runtime.Version())
			}
		}
		return true, ""
	})
}

// buildLines returns each function's "build" log line, decoded.
func buildLines(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := map[string]map[string]any{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["msg"] != "build" {
			continue
		}
		if fn, _ := l["function"].(string); fn != "" {
			found[fn] = l
		}
	}
	return found
}
