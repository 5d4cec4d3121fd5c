package e2e

import (
	"maps"
	"strings"
	"syscall"
	"testing"
)

// TestFailover is the walking skeleton's story: A creates a session and dies; B picks it
// up with everything in it and changes it; a restarted A sees the change; B logs the user
// out, and then no instance returns the session.
func TestFailover(t *testing.T) {
	a := startInstance(t, "auth-a")
	attrs := map[string]string{"cart": `["book","lamp"]`, "lang": "en", "role": "admin"}
	created := a.do(Command{Cmd: "create", Principal: "alice", Attrs: attrs})
	if !created.OK || len(created.ID) != 43 {
		t.Fatalf("create: %s", describe(created))
	}
	id := created.ID
	// A saves a change before it dies: the change must survive too.
	attrs["theme"] = "dark"
	if r := a.do(Command{Cmd: "set", ID: id, Attrs: map[string]string{"theme": "dark"}}); !r.OK {
		t.Fatalf("set on A: %s", describe(r))
	}
	pid := a.cmd.Process.Pid
	a.kill()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("instance A (pid %d) still alive after SIGKILL", pid)
	}

	b := startInstance(t, "auth-b")
	var got Reply
	eventually(t, "B loads A's session with all its attributes", func() (bool, string) {
		got = b.do(Command{Cmd: "load", ID: id})
		return got.OK && got.Principal == "alice" && maps.Equal(got.Attrs, attrs), describe(got)
	})

	if r := b.do(Command{Cmd: "set", ID: id, Attrs: map[string]string{"cart": `["book"]`}}); !r.OK || r.Attrs["cart"] != `["book"]` {
		t.Fatalf("set on B: %s", describe(r))
	}
	// B reads its own write at once, before the function has applied it.
	if r := b.do(Command{Cmd: "load", ID: id}); r.Attrs["cart"] != `["book"]` {
		t.Fatalf("B does not read its own write: %s", describe(r))
	}

	a2 := startInstance(t, "auth-a") // A restarted: same name, empty memory
	eventually(t, "restarted A sees B's change", func() (bool, string) {
		r := a2.do(Command{Cmd: "load", ID: id})
		return r.OK && r.Attrs["cart"] == `["book"]` && r.Attrs["theme"] == "dark", describe(r)
	})

	c := startInstance(t, "auth-c")
	if r := b.do(Command{Cmd: "destroy", ID: id}); !r.OK {
		t.Fatalf("destroy on B: %s", describe(r))
	}
	for _, in := range []*instance{b, a2, c} {
		eventually(t, in.name+" refuses the destroyed session", func() (bool, string) {
			r := in.do(Command{Cmd: "load", ID: id})
			return r.NotFound, describe(r)
		})
	}
	// A save from a stale copy after the logout must not bring it back.
	if r := a2.do(Command{Cmd: "set", ID: id, Attrs: map[string]string{"x": "1"}}); !r.NotFound {
		t.Fatalf("set after destroy: got %s, want not found", describe(r))
	}
}

// TestUnknownAndMalformedIDs: ids that were never issued are simply not found.
func TestUnknownAndMalformedIDs(t *testing.T) {
	a := startInstance(t, "auth-ids")
	for _, id := range []string{"", "short", strings.Repeat("A", 43), strings.Repeat("!", 43)} {
		if r := a.do(Command{Cmd: "load", ID: id}); !r.NotFound {
			t.Errorf("load %q: got %s, want not found", id, describe(r))
		}
	}
}
