// Package storetest is the conformance suite of client.Store, run against every
// persistence (memory, file, ha) as testing/slogtest is run against every slog.Handler:
// one set of expectations, so that an application that works with one persistence works
// with the others.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) *client.Store {
//			s, err := client.Open(context.Background(), client.Config{Persistence: client.PersistenceMemory})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		}, storetest.Options{})
//	}
//
// The suite covers Create, Save, Load, Destroy and Close; reading one's own writes;
// ErrNotFound for unknown, malformed, expired and destroyed ids; ErrInvalid and ErrClosed;
// the copy semantics of sessions and attribute values; concurrent use (run it with -race);
// and, for a persistence that shares sessions, another Store reading them.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
)

// Options say what the suite may expect of a persistence. The zero value fits memory.
type Options struct {
	// Shared: a Store that open returns later in the same test reads the sessions of one
	// it returned earlier, once that one is closed (file, ha). Default false.
	Shared bool
	// Eventually bounds how long a change takes to be readable by another Store (ha:
	// the bus, the function and the table in between); the suite polls up to it.
	// Default 0: at once.
	Eventually time.Duration
}

// Run runs the suite. open returns a new Store each time it is called; Stores opened for
// one test share their persistence when Options.Shared says so. open should close what it
// opens when the test ends (t.Cleanup); the suite closes some itself, and a second Close
// is harmless.
func Run(t *testing.T, open func(t *testing.T) *client.Store, o Options) {
	r := &runner{open: open, o: o}
	for _, c := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"CreateLoad", r.createLoad},
		{"ReadYourWrites", r.readYourWrites},
		{"Copies", r.copies},
		{"NotFound", r.notFound},
		{"Expiry", r.expiry},
		{"Destroy", r.destroy},
		{"Invalid", r.invalid},
		{"Close", r.close},
		{"Stats", r.stats},
		{"Concurrent", r.concurrent},
		{"Shared", r.shared},
	} {
		t.Run(c.name, c.f)
	}
}

type runner struct {
	open func(t *testing.T) *client.Store
	o    Options
}

var ctx = context.Background()

func create(t *testing.T, s *client.Store, n client.NewSession) *client.Session {
	t.Helper()
	sess, err := s.Create(ctx, n)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sess
}

func load(t *testing.T, s *client.Store, id string) *client.Session {
	t.Helper()
	sess, err := s.Load(ctx, id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return sess
}

func save(t *testing.T, s *client.Store, sess *client.Session) {
	t.Helper()
	if err := s.Save(ctx, sess); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// attrs returns a session's attributes as strings.
func attrs(s *client.Session) map[string]string {
	m := map[string]string{}
	for _, n := range s.Names() {
		v, _ := s.Get(n)
		m[n] = string(v)
	}
	return m
}

// eventually polls cond for up to the backend's Eventually (plus slack for a slow
// machine), and fails with cond's last word if it never holds.
func (r *runner) eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(r.o.Eventually + 5*time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, r.o.Eventually+5*time.Second, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *runner) createLoad(t *testing.T) {
	s := r.open(t)
	before := time.Now()
	sess := create(t, s, client.NewSession{
		Principal: "alice", Group: "staff", MaxIdle: 20 * time.Minute, MaxLife: 2 * time.Hour,
		Attrs: map[string][]byte{"lang": []byte("en"), "empty": {}},
	})
	if len(sess.ID()) != 43 || strings.ContainsAny(sess.ID(), "+/=") {
		t.Fatalf("id %q: want 43 base64url characters", sess.ID())
	}
	if other := create(t, s, client.NewSession{Principal: "alice"}); other.ID() == sess.ID() {
		t.Fatal("two sessions got the same id")
	}
	got := load(t, s, sess.ID())
	want := map[string]string{"lang": "en", "empty": ""}
	if got.ID() != sess.ID() || got.Principal() != "alice" || got.Group() != "staff" || !maps.Equal(attrs(got), want) {
		t.Fatalf("loaded %q %q %v, want alice staff %v", got.Principal(), got.Group(), attrs(got), want)
	}
	if got.MaxIdle() != 20*time.Minute || got.MaxLife() != 2*time.Hour {
		t.Errorf("limits %s %s, want 20m 2h", got.MaxIdle(), got.MaxLife())
	}
	if c := got.Created(); c.Before(before.Add(-time.Second)) || c.After(time.Now().Add(time.Second)) {
		t.Errorf("created %s, want about %s", c, before)
	}
	if exp := got.ExpiresAt(); exp.Before(before.Add(19*time.Minute)) || exp.After(time.Now().Add(21*time.Minute)) {
		t.Errorf("expires %s, want about 20 minutes from now", exp)
	}
	if got.Modified() {
		t.Error("a freshly loaded session reports itself modified")
	}
	// Defaults: 30 min idle, 8 h life.
	d := load(t, s, create(t, s, client.NewSession{Principal: "bob"}).ID())
	if d.MaxIdle() != 30*time.Minute || d.MaxLife() != 8*time.Hour || len(d.Names()) != 0 {
		t.Errorf("defaults: %s %s %v, want 30m 8h and no attributes", d.MaxIdle(), d.MaxLife(), d.Names())
	}
}

func (r *runner) readYourWrites(t *testing.T) {
	s := r.open(t)
	sess := create(t, s, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"a": []byte("1"), "b": []byte("2")}})
	before := sess.LastAccess()
	sess.Set("a", []byte("one"))
	sess.Set("c", []byte("3"))
	sess.Delete("b")
	sess.Delete("never-there")
	if !sess.Modified() {
		t.Error("Set and Delete did not make the session modified")
	}
	save(t, s, sess)
	if sess.Modified() {
		t.Error("still modified after Save")
	}
	if sess.LastAccess().Before(before) {
		t.Error("Save moved LastAccess back")
	}
	want := map[string]string{"a": "one", "c": "3"}
	if got := attrs(load(t, s, sess.ID())); !maps.Equal(got, want) {
		t.Fatalf("after Save: %v, want %v", got, want)
	}
	// A second round on a loaded copy, then on the first copy again.
	l := load(t, s, sess.ID())
	l.Set("d", []byte("4"))
	save(t, s, l)
	sess.Set("a", []byte("uno"))
	save(t, s, sess)
	got := attrs(load(t, s, sess.ID()))
	if got["a"] != "uno" || got["c"] != "3" {
		t.Fatalf("after two copies saved: %v", got)
	}
	// Saving with nothing changed is allowed and changes nothing.
	save(t, s, load(t, s, sess.ID()))
	if again := attrs(load(t, s, sess.ID())); !maps.Equal(again, got) {
		t.Fatalf("an unchanged Save changed the session: %v, was %v", again, got)
	}
}

func (r *runner) copies(t *testing.T) {
	s := r.open(t)
	initial := map[string][]byte{"k": []byte("v")}
	sess := create(t, s, client.NewSession{Principal: "alice", Attrs: initial})
	initial["k"][0] = 'X' // the caller's map and slices are not the session's
	initial["new"] = []byte("n")
	value := []byte("set")
	sess.Set("s", value)
	value[0] = 'X'
	if v, _ := sess.Get("s"); string(v) != "set" {
		t.Errorf("Set kept the caller's slice: %q", v)
	}
	v, _ := sess.Get("k")
	v[0] = 'X'
	if v, _ := sess.Get("k"); string(v) != "v" {
		t.Errorf("Get returned the session's own slice: now %q", v)
	}
	save(t, s, sess)
	a, b := load(t, s, sess.ID()), load(t, s, sess.ID())
	a.Set("k", []byte("changed in a"))
	a.Delete("s")
	if got := attrs(b); got["k"] != "v" || got["s"] != "set" || got["new"] != "" {
		t.Errorf("a change to one loaded copy showed in another: %v", got)
	}
	if got := attrs(load(t, s, sess.ID())); got["k"] != "v" || got["s"] != "set" {
		t.Errorf("an unsaved change reached the store: %v", got)
	}
	sess.Set("after", []byte("save"))
	if got := attrs(load(t, s, sess.ID())); got["after"] != "" {
		t.Errorf("a change after Save reached the store without a Save: %v", got)
	}
}

func (r *runner) notFound(t *testing.T) {
	s := r.open(t)
	sess := create(t, s, client.NewSession{Principal: "alice"})
	unknown := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, id := range []string{unknown, "", "short", strings.Repeat("!", 43), sess.ID() + "x", strings.ToUpper(sess.ID())} {
		if id == sess.ID() {
			continue
		}
		if _, err := s.Load(ctx, id); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("Load(%.12q...): %v, want ErrNotFound", id, err)
		}
	}
}

func (r *runner) expiry(t *testing.T) {
	s := r.open(t)
	// The session's last access is at least this (stores keep it to the millisecond,
	// rounded down), so it must be returned until a second after it.
	before := time.Now().Truncate(time.Millisecond)
	sess := create(t, s, client.NewSession{Principal: "alice", MaxIdle: time.Second, Attrs: map[string][]byte{"k": []byte("v")}})
	if sess.MaxIdle() != time.Second {
		t.Fatalf("MaxIdle %s, want 1s", sess.MaxIdle())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Load(ctx, sess.ID())
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a session idle past its MaxIdle of 1s is still returned after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if idle := time.Since(before); idle < time.Second {
		t.Fatalf("the session was refused after %s, before its MaxIdle of 1s", idle)
	}
	sess.Set("k", []byte("too late"))
	if err := s.Save(ctx, sess); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Save of an expired session: %v, want ErrNotFound", err)
	}
	if _, err := s.Load(ctx, sess.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Load after a Save of an expired session: %v, want ErrNotFound", err)
	}
}

func (r *runner) destroy(t *testing.T) {
	s := r.open(t)
	sess := create(t, s, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"k": []byte("v")}})
	copy := load(t, s, sess.ID())
	if err := s.Destroy(ctx, sess.ID()); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := s.Load(ctx, sess.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Load after Destroy: %v, want ErrNotFound", err)
	}
	copy.Set("k", []byte("resurrect"))
	if err := s.Save(ctx, copy); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Save of a destroyed session: %v, want ErrNotFound", err)
	}
	if _, err := s.Load(ctx, sess.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Load after a Save of a destroyed session: %v, want ErrNotFound", err)
	}
	for _, id := range []string{sess.ID(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "malformed"} {
		if err := s.Destroy(ctx, id); err != nil {
			t.Errorf("Destroy of a destroyed, unknown or malformed id: %v, want nil", err)
		}
	}
	// The others are untouched.
	other := create(t, s, client.NewSession{Principal: "bob"})
	if err := s.Destroy(ctx, create(t, s, client.NewSession{Principal: "carol"}).ID()); err != nil {
		t.Fatal(err)
	}
	load(t, s, other.ID())
}

func (r *runner) invalid(t *testing.T) {
	s := r.open(t)
	for name, n := range map[string]client.NewSession{
		"no principal":         {},
		"negative MaxIdle":     {Principal: "a", MaxIdle: -time.Second},
		"negative MaxLife":     {Principal: "a", MaxLife: -time.Second},
		"too many attributes":  {Principal: "a", Attrs: manyAttrs(257)},
		"empty attribute name": {Principal: "a", Attrs: map[string][]byte{"": []byte("v")}},
		"long attribute name":  {Principal: "a", Attrs: map[string][]byte{strings.Repeat("n", 129): []byte("v")}},
		"too large":            {Principal: "a", Attrs: map[string][]byte{"big": make([]byte, 200<<10)}},
		"bad group":            {Principal: "a", Group: "no spaces"},
		"life over the limit":  {Principal: "a", MaxLife: client.DefaultMaxSessionLife + time.Second},
	} {
		if _, err := s.Create(ctx, n); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("Create with %s: %v, want ErrInvalid", name, err)
		}
	}
	// A session that could not be stored is refused naming the limit it is over.
	limit := strconv.Itoa(events.MaxMessageBytes)
	if _, err := s.Create(ctx, client.NewSession{Principal: "a", Attrs: map[string][]byte{"big": make([]byte, 200<<10)}}); err == nil || !strings.Contains(err.Error(), limit) {
		t.Errorf("Create of a session too large: %v, want an error naming the limit (%s bytes)", err, limit)
	}
	if err := s.Save(ctx, nil); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Save(nil): %v, want ErrInvalid", err)
	}
	if err := s.Save(ctx, &client.Session{}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Save of a zero Session: %v, want ErrInvalid", err)
	}
	sess := create(t, s, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"keep": []byte("me")}})
	sess.Set("big", make([]byte, 200<<10))
	if err := s.Save(ctx, sess); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), limit) {
		t.Errorf("Save of a session too large: %v, want ErrInvalid naming the limit (%s bytes)", err, limit)
	}
	if got := attrs(load(t, s, sess.ID())); !maps.Equal(got, map[string]string{"keep": "me"}) {
		t.Errorf("a refused Save changed the session: %v", got)
	}
	// 256 attributes are allowed.
	load(t, s, create(t, s, client.NewSession{Principal: "a", Attrs: manyAttrs(256)}).ID())
}

func manyAttrs(n int) map[string][]byte {
	m := make(map[string][]byte, n)
	for i := range n {
		m["a"+strconv.Itoa(i)] = []byte("v")
	}
	return m
}

func (r *runner) close(t *testing.T) {
	s := r.open(t)
	sess := create(t, s, client.NewSession{Principal: "alice"})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	if _, err := s.Create(ctx, client.NewSession{Principal: "a"}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Create after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Load(ctx, sess.ID()); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
	if err := s.Save(ctx, sess); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Save after Close: %v, want ErrClosed", err)
	}
	if err := s.Destroy(ctx, sess.ID()); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Destroy after Close: %v, want ErrClosed", err)
	}
	if m := s.Mode(); m == client.ModeDegraded {
		t.Errorf("mode %s after a clean Close", m)
	}
}

func (r *runner) stats(t *testing.T) {
	s := r.open(t)
	before := s.Stats()
	if before.Mode == client.ModeDegraded {
		t.Fatalf("a new store is %s", before.Mode)
	}
	sess := create(t, s, client.NewSession{Principal: "alice"})
	sess.Set("k", []byte("v"))
	save(t, s, sess)
	load(t, s, sess.ID())
	load(t, s, sess.ID())
	if err := s.Destroy(ctx, sess.ID()); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	for _, c := range []struct {
		name        string
		delta, want int64
	}{
		{"Requests", after.Requests - before.Requests, 5},
		{"Reads", after.Reads - before.Reads, 2},
		{"Writes", after.Writes - before.Writes, 2},
		{"Deletes", after.Deletes - before.Deletes, 1},
		{"CacheHits", after.CacheHits - before.CacheHits, 2},
	} {
		if c.delta != c.want {
			t.Errorf("Stats.%s grew by %d, want %d", c.name, c.delta, c.want)
		}
	}
	if after.PublishFailures != 0 || after.ModeSwitches != 0 {
		t.Errorf("failures on a healthy store: %+v", after)
	}
}

func (r *runner) concurrent(t *testing.T) {
	s := r.open(t)
	shared := create(t, s, client.NewSession{Principal: "shared"})
	const goroutines, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds)
	for g := range goroutines {
		wg.Go(func() {
			name := "g" + strconv.Itoa(g)
			for i := range rounds {
				own, err := s.Create(ctx, client.NewSession{Principal: name})
				if err != nil {
					errs <- err
					return
				}
				own.Set("i", []byte(strconv.Itoa(i)))
				if err := s.Save(ctx, own); err != nil {
					errs <- err
					return
				}
				got, err := s.Load(ctx, own.ID())
				if err != nil {
					errs <- fmt.Errorf("%s round %d: Load of its own session: %w", name, i, err)
					return
				}
				if v, _ := got.Get("i"); string(v) != strconv.Itoa(i) {
					errs <- fmt.Errorf("%s round %d: read %q, its own write was %d", name, i, v, i)
				}
				// One Session value, changed and saved by every goroutine at once.
				shared.Set(name, []byte(strconv.Itoa(i)))
				if err := s.Save(ctx, shared); err != nil {
					errs <- err
				}
				_, _ = shared.Get(name)
				_ = shared.Names()
				if _, err := s.Load(ctx, shared.ID()); err != nil {
					errs <- err
				}
				_ = s.Stats()
				if i%4 == 0 {
					if err := s.Destroy(ctx, own.ID()); err != nil {
						errs <- err
					}
					if _, err := s.Load(ctx, own.ID()); !errors.Is(err, client.ErrNotFound) {
						errs <- fmt.Errorf("%s round %d: Load after its Destroy: %v", name, i, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := attrs(load(t, s, shared.ID()))
	for g := range goroutines {
		if name := "g" + strconv.Itoa(g); got[name] != strconv.Itoa(rounds-1) {
			t.Errorf("shared session: %s = %q, want %d (every goroutine's last Set was saved)", name, got[name], rounds-1)
		}
	}
}

func (r *runner) shared(t *testing.T) {
	if !r.o.Shared {
		t.Skip("this persistence does not share sessions between stores")
	}
	a := r.open(t)
	sess := create(t, a, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"k": []byte("v")}})
	sess.Set("cart", []byte(`["book"]`))
	save(t, a, sess)
	gone := create(t, a, client.NewSession{Principal: "bob"})
	if err := a.Destroy(ctx, gone.ID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b := r.open(t)
	want := map[string]string{"k": "v", "cart": `["book"]`}
	r.eventually(t, "another store reads the session", func() (bool, string) {
		got, err := b.Load(ctx, sess.ID())
		if err != nil {
			return false, err.Error()
		}
		return maps.Equal(attrs(got), want) && got.Principal() == "alice", fmt.Sprint(attrs(got))
	})
	// The destroy may be applied after the save above (the bus keeps no order): wait.
	r.eventually(t, "another store refuses the destroyed session", func() (bool, string) {
		_, err := b.Load(ctx, gone.ID())
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
	got := load(t, b, sess.ID())
	got.Delete("k")
	got.Set("by", []byte("b"))
	save(t, b, got)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := r.open(t)
	want = map[string]string{"cart": `["book"]`, "by": "b"}
	r.eventually(t, "a third store reads the second one's change", func() (bool, string) {
		got, err := c.Load(ctx, sess.ID())
		if err != nil {
			return false, err.Error()
		}
		return maps.Equal(attrs(got), want), fmt.Sprint(attrs(got))
	})
	if err := c.Destroy(ctx, sess.ID()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d := r.open(t)
	r.eventually(t, "a destroy is final for every store", func() (bool, string) {
		_, err := d.Load(ctx, sess.ID())
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
}
