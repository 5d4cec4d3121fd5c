package record

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sessionha/sessionha/local/localtest"
)

var db *dynamodb.Client

// TestMain runs the table tests against DynamoDB Local (the merge tests need nothing).
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	var (
		stop func()
		err  error
	)
	if db, stop, err = localtest.DynamoDB(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	if err := localtest.CreateSessionTable(ctx, db, "sessions"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// TestApplyShortcuts: a create of a new session is one write and no read; a create that
// finds its session stored reads the session and its logout item then; other ops read
// first (one call for both items); a destroy writes two items; and every result is what
// read-merge-put makes.
func TestApplyShortcuts(t *testing.T) {
	ctx := context.Background()
	tb := &Table{DB: db, Name: "sessions", Grace: time.Minute, LogoutKeep: time.Minute}
	now := time.Now().UnixMilli()
	sess := func(la int64, v string) *Item {
		return &Item{Principal: "p", Created: now, LastAccess: la, MaxIdle: 600, MaxLife: 3600, Site: "s", Writer: "w",
			Attrs: map[string][]byte{"a": []byte(v)}}
	}
	ver := func(n int) string { return Version(fmt.Sprintf("%016x", n), "w") }
	apply := func(op Op, want Result, reads, writes, conflicts int) {
		t.Helper()
		res, st, err := tb.Apply(ctx, op)
		if err != nil || res != want || st != (Stats{Reads: reads, Writes: writes, Conflicts: conflicts}) {
			t.Fatalf("Apply %v: %v %+v %v; want %v and %d reads, %d writes, %d conflicts", op.Kind, res, st, err, want, reads, writes, conflicts)
		}
	}
	get := func(key string) *Item {
		t.Helper()
		it, err := tb.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}

	create := Op{Kind: Create, Key: "c#new", Version: ver(1), Session: sess(now, "1")}
	apply(create, Written, 0, 1, 0)
	// A duplicate: its write loses and returns the item, and the logout item, which the
	// put did not see, is read with it.
	apply(create, Unchanged, 1, 1, 1)
	save := Op{Kind: Save, Key: "c#new", Version: ver(2), Session: sess(now+1000, "2")}
	apply(save, Written, 1, 1, 0)
	apply(create, Unchanged, 1, 1, 1) // an old create after a save changes nothing
	if it := get("c#new"); string(it.Attrs["a"]) != "2" || it.Rev != 2 {
		t.Fatalf("after create, save, stale create: %+v", it)
	}

	// A destroy first (its logout item, then its tombstone), then its create: the
	// session stays destroyed, and both items outlive the session.
	tomb := Op{Kind: Destroy, Key: "c#gone", Version: ver(5)}
	apply(tomb, Written, 1, 2, 0)
	apply(tomb, Unchanged, 1, 0, 0) // a duplicate finds both: nothing to write
	late := Op{Kind: Create, Key: "c#gone", Version: ver(1), Session: sess(now, "x")}
	apply(late, Written, 1, 3, 1) // lost against the tombstone, read both, extended both
	it := get("c#gone")
	if it.State != Destroyed || it.ExpiresAt < (now+3600*1000)/1000 {
		t.Fatalf("a create after its destroy: %+v", it)
	}
	if s, err := tb.Read(ctx, "c#gone"); err != nil || s.Logout == nil || s.Logout.ExpiresAt < (now+3600*1000)/1000 {
		t.Fatalf("the logout item after a create that came after its destroy: %+v %v", s.Logout, err)
	}

	// A create expired on arrival writes nothing, and reads first (a tombstone might
	// need extending).
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	expired := Op{Kind: Create, Key: "c#old", Version: ver(1), Session: &Item{Principal: "p", Created: old, LastAccess: old, MaxIdle: 60, MaxLife: 3600}}
	apply(expired, Unchanged, 1, 0, 0)
	if get("c#old") != nil {
		t.Fatal("an expired create was stored")
	}
}
