package e2e

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/local/edge"
)

// TestTimeBasedCoalesces counts what reaches the ops topic with time-based frequency:
// sessions created and changed ten times within one interval are one message each, sent
// at the flush, and nothing is sent before; Close sends what is left.
func TestTimeBasedCoalesces(t *testing.T) {
	ctx := context.Background()
	tap := newOpsTap(t)
	store := openHA(t, "timebased-"+randomSuffix(), func(c *client.Config) {
		c.Frequency, c.FlushInterval = client.FrequencyTimeBased, time.Hour // flushed by hand below
	})
	const sessions, changes = 3, 10
	var ids []string
	for range sessions {
		// Idle for longer than the interval: a change the hour's flush would bring after
		// the session's deadline would go at once.
		s, err := store.Create(ctx, client.NewSession{Principal: "alice", MaxIdle: 2 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for j := 1; j <= changes; j++ {
			s.Set("n", []byte(strconv.Itoa(j)))
			if err := store.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, s.ID())
	}
	if st := store.Stats(); st.Sent != 0 || st.Pending != sessions {
		t.Fatalf("before the flush: %d sent, %d pending; want 0 and %d", st.Sent, st.Pending, sessions)
	}
	if tableItem(t, ids[0]) != nil {
		t.Fatal("a session reached the table before its interval")
	}
	if err := store.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ops := tap.receive(sessions, ids...)
	if len(ops) != sessions {
		t.Fatalf("%d sessions, each created and changed %d times in one interval: %d messages (%s), want %d",
			sessions, changes, len(ops), kinds(ops), sessions)
	}
	for _, op := range ops {
		if op.Op != events.OpCreate || string(op.Session.Attrs["n"]) != strconv.Itoa(changes) {
			t.Errorf("coalesced op %s with n=%q, want a create with the last change, n=%d", op.Op, op.Session.Attrs["n"], changes)
		}
	}
	if st := store.Stats(); st.Sent != sessions || st.Pending != 0 {
		t.Errorf("after the flush: %d sent, %d pending; want %d and 0", st.Sent, st.Pending, sessions)
	}

	// Ten more changes to one session, left for Close.
	s, err := store.Load(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for j := 1; j <= changes; j++ {
		s.Set("m", []byte(strconv.Itoa(j)))
		if err := store.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	more := tap.receive(1, ids...)
	if len(more) != 1 || more[0].Op != events.OpSave || string(more[0].Session.Attrs["m"]) != strconv.Itoa(changes) {
		t.Fatalf("10 changes then Close: %d messages (%s), want one save with the last change", len(more), kinds(more))
	}
	eventually(t, "the last change is in the table", func() (bool, string) {
		it := tableItem(t, ids[0])
		if it == nil {
			return false, "no item"
		}
		return string(it.Attrs["m"]) == strconv.Itoa(changes) && string(it.Attrs["n"]) == strconv.Itoa(changes), strconv.Quote(string(it.Attrs["m"]))
	})
	t.Logf("time-based: %d sessions × (1 create + %d saves) in one interval = %d messages; %d more saves then Close = %d message",
		sessions, changes, len(ops), changes, len(more))
}

// TestTimeBasedInterval: the interval alone sends a change, with no Flush or Close.
func TestTimeBasedInterval(t *testing.T) {
	ctx := context.Background()
	store := openHA(t, "interval-"+randomSuffix(), func(c *client.Config) {
		c.Frequency, c.FlushInterval = client.FrequencyTimeBased, 300*time.Millisecond
	})
	s, err := store.Create(ctx, client.NewSession{Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	s.Set("k", []byte("v"))
	if err := store.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the interval's flush reaches the table", func() (bool, string) {
		it := tableItem(t, s.ID())
		return it != nil && string(it.Attrs["k"]) == "v", "not yet"
	})
}

// TestModifiedAttribute checks what scope modified-attribute publishes: a create whole;
// then deltas with only the attributes set and removed, and the metadata without
// attributes; nothing for a Save without changes; a touch (neither set nor remove) once
// the last access is over MaxIdle/2 old; and a whole session after a spell in degraded
// mode. The table ends with the merged state.
func TestModifiedAttribute(t *testing.T) {
	ctx := context.Background()
	tap := newOpsTap(t)
	store := openHA(t, "delta-"+randomSuffix(), func(c *client.Config) { c.Scope = client.ScopeModifiedAttribute })
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })

	s, err := store.Create(ctx, client.NewSession{Principal: "alice", Group: "staff",
		Attrs: map[string][]byte{"a": []byte("1"), "b": []byte("2"), "c": []byte("3")}})
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	if ops := tap.receive(1, id); len(ops) != 1 || ops[0].Op != events.OpCreate || len(ops[0].Session.Attrs) != 3 {
		t.Fatalf("create: %s, want one create with the 3 attributes", kinds(ops))
	}

	l, err := store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	l.Set("a", []byte("10"))
	l.Set("c", []byte("3")) // the value it has: not a change
	l.Delete("b")
	if err := store.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	ops := tap.receive(1, id)
	if len(ops) != 1 {
		t.Fatalf("one Save: %d messages (%s)", len(ops), kinds(ops))
	}
	d := ops[0]
	if d.Op != events.OpDelta || len(d.Set) != 1 || string(d.Set["a"]) != "10" || !slices.Equal(d.Remove, []string{"b"}) {
		t.Fatalf("delta: op %s set %v remove %v; want a delta setting a=10 and removing b", d.Op, d.Set, d.Remove)
	}
	if m := d.Session; m == nil || m.Attrs != nil || m.Principal != "alice" || m.Group != "staff" || m.MaxIdle != 1800 || m.LastAccess < m.Created {
		t.Fatalf("delta metadata %+v: want the session's metadata and no attributes", m)
	}

	sent := store.Stats().Sent
	if err := store.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := store.Stats().Sent; got != sent {
		t.Errorf("a Save without changes (last access fresh) sent %d messages", got-sent)
	}
	eventually(t, "the delta is applied", func() (bool, string) {
		it := tableItem(t, id)
		if it == nil {
			return false, "no item"
		}
		got := map[string]string{}
		for k, v := range it.Attrs {
			got[k] = string(v)
		}
		return maps.Equal(got, map[string]string{"a": "10", "c": "3"}), strconv.Quote(string(it.Attrs["a"]))
	})

	// A touch: a session with a short MaxIdle, saved unchanged once half of it has passed.
	short, err := store.Create(ctx, client.NewSession{Principal: "bob", MaxIdle: 2 * time.Second, Attrs: map[string][]byte{"k": []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	tap.receive(1, short.ID())
	for time.Since(short.LastAccess()) < time.Second+50*time.Millisecond {
		time.Sleep(20 * time.Millisecond) // waiting for time itself to pass
	}
	if err := store.Save(ctx, short); err != nil {
		t.Fatal(err)
	}
	if ops := tap.receive(1, short.ID()); len(ops) != 1 || ops[0].Op != events.OpDelta || ops[0].Set != nil || ops[0].Remove != nil ||
		ops[0].Session.LastAccess <= ops[0].Session.Created {
		t.Fatalf("touch: %s; want one delta with neither set nor remove, and a later last access", kinds(ops))
	}

	// Degraded: the recovery sends the whole session, whatever the scope.
	theSite.Edge.SetFault("sns", edge.FaultRefuse)
	l.Set("d", []byte("4"))
	if err := store.Save(ctx, l); err != nil {
		t.Fatalf("Save while the bus refuses: %v, want nil (kept for the recovery)", err)
	}
	if m := store.Mode(); m != client.ModeDegraded {
		t.Fatalf("mode %s after a publish failed", m)
	}
	theSite.Edge.SetFault("sns", edge.FaultNone)
	eventually(t, "back in failover mode", func() (bool, string) {
		return store.Mode() == client.ModeFailover, store.Mode().String()
	})
	ops = tap.receive(1, id)
	if len(ops) != 1 || ops[0].Op != events.OpSave || len(ops[0].Session.Attrs) != 3 || string(ops[0].Session.Attrs["d"]) != "4" {
		t.Fatalf("recovery: %s; want one whole save with a, c and d", kinds(ops))
	}
	eventually(t, "the recovery's snapshot is applied", func() (bool, string) {
		it := tableItem(t, id)
		return it != nil && string(it.Attrs["d"]) == "4" && it.Attrs["b"] == nil, "not yet"
	})
}
