package record

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestApplyObserve: Observe sees the stored item of every round that has one, before
// anything is written, a stale op that changes nothing included; a create of a new
// session has none to show; an error from Observe ends Apply with nothing written.
func TestApplyObserve(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UnixMilli()
	var seen []string // "stored version <- op version"
	fail := error(nil)
	tb := &Table{DB: db, Name: "sessions", Grace: time.Minute, Observe: func(_ context.Context, cur *Item, op Op) error {
		seen = append(seen, cur.Version+" <- "+op.Version)
		return fail
	}}
	sess := func(la int64) *Item {
		return &Item{Principal: "p", Created: now, LastAccess: la, MaxIdle: 600, MaxLife: 3600, Site: "s", Writer: "w"}
	}
	ver := func(n int, w string) string { return Version(fmt.Sprintf("%016x", n), w) }
	key := "c#observe"
	apply := func(op Op) Result {
		t.Helper()
		res, _, err := tb.Apply(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	apply(Op{Kind: Create, Key: key, Version: ver(1, "a"), Session: sess(now)})
	if len(seen) != 0 {
		t.Fatalf("a create of a new session observed %v, want nothing (there is no stored item)", seen)
	}
	apply(Op{Kind: Save, Key: key, Version: ver(3, "b"), Session: sess(now + 1000)})
	if res := apply(Op{Kind: Save, Key: key, Version: ver(2, "a"), Session: sess(now)}); res != Unchanged {
		t.Fatalf("a stale save: %v, want Unchanged", res)
	}
	want := []string{ver(1, "a") + " <- " + ver(3, "b"), ver(3, "b") + " <- " + ver(2, "a")}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", seen, want)
	}

	fail = errors.New("cannot tell the owner")
	_, st, err := tb.Apply(ctx, Op{Kind: Save, Key: key, Version: ver(4, "c"), Session: sess(now + 2000)})
	if !errors.Is(err, fail) || st.Writes != 0 {
		t.Fatalf("Observe failing: %v, %d writes; want its error and no write", err, st.Writes)
	}
	if it, err := tb.Get(ctx, key); err != nil || it.Version != ver(3, "b") {
		t.Fatalf("after a failed Observe the item is %+v (%v), want version %s", it, err, ver(3, "b"))
	}
}
