package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/edge"
)

// TestDegradedCrashKeepsChangesAndLogouts: the bus is cut; an auth server process saves
// a change, creates a session and logs a user out, all acknowledged in degraded mode;
// then it is SIGKILLed, restarted with the same instance id while the bus is still cut,
// and the bus is restored. Nothing it acknowledged is lost: the change and the new
// session reach the table and another instance; the logout holds everywhere: an
// instance reading the table directly refuses the session at once, before the bus is
// back (the logout was written to the table), and an instance reading over the bus that
// had it cached refuses it after the notice sent on recovery. The journal holds no
// session id in clear, is readable by its user only, and is gone after a clean Close.
func TestDegradedCrashKeepsChangesAndLogouts(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	journals := t.TempDir()
	name := "auth-crash-" + randomSuffix()
	env := []string{"SESSIONHA_JOURNAL_DIR=" + journals, "SESSIONHA_PUBLISH_TIMEOUT=500ms"}
	a := startInstanceWith(t, name, env...)

	saved := a.do(Command{Cmd: "create", Principal: "alice", Attrs: map[string]string{"cart": `["book"]`}})
	gone := a.do(Command{Cmd: "create", Principal: "bob", Attrs: map[string]string{"lang": "en"}})
	if !saved.OK || !gone.OK || saved.Mode != "failover" {
		t.Fatalf("creates before the cut: %s, %s", describe(saved), describe(gone))
	}
	direct := openHA(t, "crash-direct-"+randomSuffix(), nil)
	busy := openHA(t, "crash-bus-"+randomSuffix(), busReader)
	for _, id := range []string{saved.ID, gone.ID} {
		for _, s := range []*client.Store{direct, busy} {
			eventually(t, "an observer loads (and caches) A's session", func() (bool, string) {
				_, err := s.Load(ctx, id)
				return err == nil, fmt.Sprint(err)
			})
		}
	}
	noticesBefore := busy.Stats().Notices

	theSite.Edge.SetFault("sns", edge.FaultRefuse)
	want := map[string]string{"cart": `["book","lamp"]`}
	if r := a.do(Command{Cmd: "set", ID: saved.ID, Attrs: want}); !r.OK || r.Mode != "degraded" {
		t.Fatalf("save with the bus cut: %s, want ok in degraded mode", describe(r))
	}
	created := a.do(Command{Cmd: "create", Principal: "carol", Attrs: map[string]string{"new": "while degraded"}})
	if !created.OK || created.Mode != "degraded" {
		t.Fatalf("create with the bus cut: %s", describe(created))
	}
	if r := a.do(Command{Cmd: "destroy", ID: gone.ID}); !r.OK {
		t.Fatalf("logout with the bus cut: %s", describe(r))
	}
	// A reads the table directly, so it may write it: the logout is there at once.
	eventually(t, "an instance reading the table refuses the logged-out session with the bus still cut", func() (bool, string) {
		_, err := direct.Load(ctx, gone.ID)
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})

	a.kill()
	a = startInstanceWith(t, name, env...) // same instance id, same journal, bus still cut
	if r := a.do(Command{Cmd: "load", ID: saved.ID}); !r.OK || !maps.Equal(r.Attrs, want) || r.Mode != "degraded" {
		t.Fatalf("the restarted instance, bus cut: %s, want its acknowledged change %v in degraded mode", describe(r), want)
	}
	if r := a.do(Command{Cmd: "load", ID: gone.ID}); !r.NotFound {
		t.Fatalf("the restarted instance serves the logged-out session: %s", describe(r))
	}
	checkJournalFiles(t, journals, saved.ID, gone.ID, created.ID)

	theSite.Edge.SetFault("sns", edge.FaultNone)
	eventually(t, "the restarted instance returns to failover mode", func() (bool, string) {
		r := a.do(Command{Cmd: "load", ID: created.ID})
		return r.OK && r.Mode == "failover", describe(r)
	})
	eventually(t, "the change saved while degraded reaches another instance", func() (bool, string) {
		s, err := direct.Load(ctx, saved.ID)
		if err != nil {
			return false, err.Error()
		}
		return maps.Equal(stringsOf(s), want), fmt.Sprint(stringsOf(s))
	})
	eventually(t, "the session created while degraded reaches another instance", func() (bool, string) {
		s, err := direct.Load(ctx, created.ID)
		if err != nil {
			return false, err.Error()
		}
		v, _ := s.Get("new")
		return string(v) == "while degraded", string(v)
	})
	if it := tableItem(t, gone.ID); it == nil || it.State != record.Destroyed {
		t.Fatalf("the logout is not in the table after the recovery: %+v", it)
	}
	eventually(t, "the bus reader that had the session cached takes the logout's notice", func() (bool, string) {
		n := busy.Stats().Notices - noticesBefore
		return n >= 1, fmt.Sprintf("%d notices", n)
	})
	if _, err := busy.Load(ctx, gone.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the bus reader serves the logged-out session: %v", err)
	}

	// A clean stop sends what is left and removes the journal.
	a.stop()
	var left []string
	_ = filepath.WalkDir(journals, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("files left in the journal directory after a clean Close: %v", left)
	}
}

// checkJournalFiles checks that what the journal directory holds is this user's only and
// carries no session id in clear.
func checkJournalFiles(t *testing.T, dir string, ids ...string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		if d.IsDir() {
			return nil
		}
		n++
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if strings.Contains(p, id) || strings.Contains(string(body), id) {
				t.Errorf("%s holds a session id in clear", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Errorf("no journal in %s while changes are unsent", dir)
	}
}
