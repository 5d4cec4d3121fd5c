package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilePersistenceSurvivesRestart: an auth server process with persistence file is
// killed (SIGKILL, no Close) and started again on the same host and directory: it has
// its users' sessions back, changes included, and a logout made before the crash stays.
func TestFilePersistenceSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SESSIONHA_PERSISTENCE=file", "SESSIONHA_FILE_DIR=" + dir}
	a := startInstanceWith(t, "auth-file", env...)
	attrs := map[string]string{"cart": `["book"]`, "lang": "en"}
	created := a.do(Command{Cmd: "create", Principal: "alice", Attrs: attrs})
	if !created.OK || created.Mode != "local" {
		t.Fatalf("create: %s", describe(created))
	}
	attrs["theme"] = "dark"
	if r := a.do(Command{Cmd: "set", ID: created.ID, Attrs: map[string]string{"theme": "dark"}}); !r.OK {
		t.Fatalf("set: %s", describe(r))
	}
	gone := a.do(Command{Cmd: "create", Principal: "bob"})
	if r := a.do(Command{Cmd: "destroy", ID: gone.ID}); !r.OK {
		t.Fatalf("destroy: %s", describe(r))
	}
	a.kill()

	b := startInstanceWith(t, "auth-file", env...)
	if r := b.do(Command{Cmd: "load", ID: created.ID}); !r.OK || r.Principal != "alice" || !maps.Equal(r.Attrs, attrs) {
		t.Fatalf("after a restart: %s, want alice with %v", describe(r), attrs)
	}
	if r := b.do(Command{Cmd: "load", ID: gone.ID}); !r.NotFound {
		t.Fatalf("a session destroyed before the restart: %s, want not found", describe(r))
	}
	// The directory holds no id in clear, and only files of this user.
	files, _ := filepath.Glob(filepath.Join(dir, "default", "*"))
	if len(files) != 1 {
		t.Errorf("session files: %v, want one", files)
	}
	for _, f := range files {
		body, _ := os.ReadFile(f)
		if strings.Contains(f, created.ID) || strings.Contains(string(body), created.ID) {
			t.Errorf("%s holds the session id in clear", f)
		}
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 600", f, info.Mode(), err)
		}
	}
}
