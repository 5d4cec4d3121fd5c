package dynamo

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The engine in third_party/minidyn is minidyn v0.8.2 with sessionha.patch applied and
// nothing else: no silent fork. The test fetches the release through the Go module proxy,
// applies the patch with git, and compares every file.
func TestEngineIsUpstreamPlusPatch(t *testing.T) {
	root, err := filepath.Abs("../../third_party/minidyn")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "mod", "download", "-json", "github.com/truora/minidyn@v0.8.2").Output()
	if err != nil {
		t.Fatalf("download minidyn v0.8.2 through the module proxy: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v (%s)", err, out)
	}
	// Ours beside the engine's sources: the module file (trimmed to what the carried
	// packages import) and the patch with its account.
	ours := []string{"go.mod", "PATCHES.md", "sessionha.patch"}
	var carried []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !slices.Contains(ours, rel) {
			carried = append(carried, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	for _, rel := range carried {
		b, err := os.ReadFile(filepath.Join(mod.Dir, rel))
		if err != nil {
			t.Fatalf("%s is not in minidyn v0.8.2: %v", rel, err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(work, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	apply := exec.Command("git", "apply", filepath.Join(root, "sessionha.patch"))
	apply.Dir = work
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("git apply sessionha.patch to v0.8.2: %v\n%s", err, out)
	}
	for _, rel := range carried {
		want, _ := os.ReadFile(filepath.Join(work, rel))
		got, _ := os.ReadFile(filepath.Join(root, rel))
		if !bytes.Equal(got, want) {
			t.Errorf("third_party/minidyn/%s differs from v0.8.2 + sessionha.patch: change the patch, not the copy", rel)
		}
	}
	if !slices.ContainsFunc(carried, func(s string) bool { return strings.HasPrefix(s, "server/") }) {
		t.Error("the engine's server package is not carried")
	}
}
