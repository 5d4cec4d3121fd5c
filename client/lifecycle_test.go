package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionha/sessionha/events"
)

func lifecycleBody(t *testing.T, kind events.LifecycleKind, cluster, id string) []byte {
	t.Helper()
	e := &events.Lifecycle{V: events.SchemaVersion, Kind: kind, Key: events.LifecycleKey(kind, cluster, id, "0000000000000001/b"),
		Cluster: cluster, ID: id, Instance: "a", Site: "eu", At: 1_800_000_000_000, Created: 1_799_999_000_000}
	switch kind {
	case events.LifecycleExpired:
		e.Reason = events.ExpiredIdle
	case events.LifecycleDestroyed:
		e.Reason, e.By = events.ReasonRevoked, "b"
	case events.LifecycleMoved:
		e.By = "b"
	}
	b, err := events.EncodeLifecycle(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLifecycleListeners: events of the store's cluster reach every listener once, a
// repeat of a key is dropped, a listener's panic harms no one, a removed listener hears
// nothing more, and a full backlog leaves the message in the queue.
func TestLifecycleListeners(t *testing.T) {
	s := &Store{cfg: Config{Cluster: "default", InstanceID: "a"}, log: slog.New(slog.DiscardHandler)}
	s.startLifecycle()
	var mu sync.Mutex
	var got, other []LifecycleEvent
	s.OnLifecycle(func(LifecycleEvent) { panic("a buggy listener") })
	remove := s.OnLifecycle(func(e LifecycleEvent) { mu.Lock(); other = append(other, e); mu.Unlock() })
	s.OnLifecycle(func(e LifecycleEvent) { mu.Lock(); got = append(got, e); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.dispatchLifecycle(ctx) }()
	defer func() { cancel(); <-done }()

	id1, id2 := events.HashID("one"), events.HashID("two")
	for _, b := range [][]byte{
		lifecycleBody(t, events.LifecycleDestroyed, "default", id1),
		lifecycleBody(t, events.LifecycleDestroyed, "default", id1), // a repeat
		lifecycleBody(t, events.LifecycleExpired, "default", id1),   // the same end, told another way
		lifecycleBody(t, events.LifecycleMoved, "other-cluster", id2),
		[]byte(`{"v":1,"kind":"destroyed"}`), // bad: dropped, not kept
	} {
		if !s.takeLifecycle(b) {
			t.Fatal("a message left in the queue with room in the backlog")
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10 s: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the event", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	e := got[0]
	if e.Kind != LifecycleDestroyed || e.Handle != id1 || e.Reason != "revoked" || e.By != "b" || e.Instance != "a" ||
		!e.At.Equal(time.UnixMilli(1_800_000_000_000)) || !e.Created.Equal(time.UnixMilli(1_799_999_000_000)) {
		t.Errorf("event %+v", e)
	}
	remove()
	s.takeLifecycle(lifecycleBody(t, events.LifecycleMoved, "default", id2))
	waitFor("the second event", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	mu.Lock()
	if len(other) != 1 {
		t.Errorf("a removed listener heard %d events, want 1 (before its removal)", len(other))
	}
	mu.Unlock()

	// No one dispatching: the backlog fills, then messages stay in the queue.
	cancel()
	<-done
	done = make(chan struct{})
	close(done)
	left := false
	for i := range lifecycleBacklog + 1 {
		if !s.takeLifecycle(lifecycleBody(t, events.LifecycleDestroyed, "default", events.HashID(strings.Repeat("x", i+3)))) {
			left = true
		}
	}
	if !left {
		t.Error("with the listeners stuck, no message was left in the queue")
	}
}

func TestLifecycleFilter(t *testing.T) {
	var f map[string][]string
	if err := json.Unmarshal([]byte(lifecycleFilter(Config{InstanceID: "auth-1"})), &f); err != nil {
		t.Fatal(err)
	}
	if strings.Join(f["instance"], ",") != "auth-1" || strings.Join(f["lifecycle"], ",") != "destroyed,expired,moved" || len(f) != 2 {
		t.Errorf("filter %v", f)
	}
}
