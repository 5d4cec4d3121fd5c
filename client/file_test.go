package client_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
)

func openFile(t *testing.T, cfg client.Config) *client.Store {
	t.Helper()
	cfg.Persistence = client.PersistenceFile
	s, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sessionFiles lists the session files of dir/cluster.
func sessionFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestFileSurvivesACrash: with web-method frequency a Save is on disk when it returns, so
// a store opened on the same directory after the first one died (never closed) has it.
func TestFileSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	a := openFile(t, client.Config{Dir: base})
	sess, err := a.Create(ctx, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"k": []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	sess.Set("cart", []byte("book"))
	if err := a.Save(ctx, sess); err != nil {
		t.Fatal(err)
	}
	// a is not closed: as if the process had been killed.
	b := openFile(t, client.Config{Dir: base})
	got, err := b.Load(ctx, sess.ID())
	if err != nil {
		t.Fatalf("the restarted store lost the session: %v", err)
	}
	if v, _ := got.Get("cart"); string(v) != "book" || got.Principal() != "alice" {
		t.Fatalf("restored %q %q", got.Principal(), v)
	}
}

// TestFileLayout: one file per session, named by the hash of its id, in Dir/<cluster>
// (0700), each readable by its owner only (0600); the id appears in no name and no file.
func TestFileLayout(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	// A directory someone made too open is closed down.
	if err := os.MkdirAll(filepath.Join(base, "c1"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := openFile(t, client.Config{Dir: base, Cluster: "c1"})
	dir := filepath.Join(base, "c1")
	var ids []string
	for range 3 {
		sess, err := s.Create(ctx, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"k": []byte("v")}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID())
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode %o, want 700", perm)
	}
	files := sessionFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("%d files for 3 sessions: %v", len(files), files)
	}
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(f), perm)
		}
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if strings.Contains(f, id) || strings.Contains(string(body), id) {
				t.Errorf("%s holds a session id in clear", filepath.Base(f))
			}
		}
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(dir, "s-"+events.HashID(id)+".json")); err != nil {
			t.Errorf("no file named by the session's hash: %v", err)
		}
	}
	// A destroy removes the file, and a later save of an old copy does not bring it back.
	old, err := s.Load(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	old.Set("k", []byte("again"))
	if err := s.Save(ctx, old); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Save after Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s-"+events.HashID(ids[0])+".json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the destroyed session's file is still there: %v", err)
	}
	// Another store (a restart) does not see it either.
	if _, err := openFile(t, client.Config{Dir: base, Cluster: "c1"}).Load(ctx, ids[0]); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("a restarted store loads a destroyed session: %v", err)
	}
	// Clusters keep apart.
	if _, err := openFile(t, client.Config{Dir: base, Cluster: "c2"}).Load(ctx, ids[1]); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("cluster c2 loads a session of c1: %v", err)
	}
}

// TestFileExpiredAreSwept: an expired session's file is never returned and is removed by
// the sweep a store makes when it opens (and every minute after).
func TestFileExpiredAreSwept(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	a := openFile(t, client.Config{Dir: base})
	short, err := a.Create(ctx, client.NewSession{Principal: "alice", MaxIdle: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	long, err := a.Create(ctx, client.NewSession{Principal: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "default")
	// A temporary file a crash left behind, long ago.
	stale := filepath.Join(dir, ".tmp-crashed")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, past, past); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(short.ExpiresAt()) {
		if time.Now().After(deadline) {
			t.Fatal("the session never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := openFile(t, client.Config{Dir: base})
	files := sessionFiles(t, dir)
	if len(files) != 1 || !strings.HasSuffix(files[0], events.HashID(long.ID())+".json") {
		t.Fatalf("after the sweep: %v, want only the live session's file", files)
	}
	if _, err := b.Load(ctx, short.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Load of an expired session: %v", err)
	}
	if _, err := b.Load(ctx, long.ID()); err != nil {
		t.Errorf("Load of a live session: %v", err)
	}
}

// TestFileTimeBasedCoalesces: with time-based frequency, a session's create and ten
// changes made within one interval are written once, at the flush; Close flushes.
func TestFileTimeBasedCoalesces(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	s := openFile(t, client.Config{Dir: base, Frequency: client.FrequencyTimeBased, FlushInterval: time.Hour, MaxSessions: 2})
	var ids []string
	for i := range 5 {
		sess, err := s.Create(ctx, client.NewSession{Principal: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		for j := range 10 {
			sess.Set("n", []byte{byte('0' + j)})
			if err := s.Save(ctx, sess); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, sess.ID())
		_ = i
	}
	st := s.Stats()
	if st.Sent != 0 || len(sessionFiles(t, filepath.Join(base, "default"))) != 0 {
		t.Fatalf("written before the interval: %+v", st)
	}
	// Unsent sessions are kept beyond MaxSessions: evicting them would lose them.
	if st.Cached != 5 || st.Pending != 5 {
		t.Fatalf("cached %d, pending %d; want 5 and 5 with MaxSessions 2", st.Cached, st.Pending)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Sent != 5 {
		t.Errorf("5 sessions, each created and changed 10 times in one interval: %d writes, want 5", st.Sent)
	}
	if st.Cached != 2 || st.Pending != 0 {
		t.Errorf("after the flush: cached %d, pending %d; want 2 and 0", st.Cached, st.Pending)
	}
	for _, id := range ids {
		got, err := s.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := got.Get("n"); string(v) != "9" {
			t.Errorf("n = %q, want the last change, 9", v)
		}
	}
	// A change left at Close is written by Close.
	last, err := s.Load(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	last.Set("n", []byte("closing"))
	if err := s.Save(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := openFile(t, client.Config{Dir: base}).Load(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("n"); string(v) != "closing" {
		t.Errorf("after Close and a restart: n = %q, want closing", v)
	}
}

// TestFileDefaultDir: without Dir, sessions go to the user's cache directory.
func TestFileDefaultDir(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", cache)
	s := openFile(t, client.Config{Cluster: "c9"})
	if _, err := s.Create(context.Background(), client.NewSession{Principal: "alice"}); err != nil {
		t.Fatal(err)
	}
	if files := sessionFiles(t, filepath.Join(cache, "sessionha", "c9")); len(files) != 1 {
		t.Fatalf("files in the default directory: %v", files)
	}
}
