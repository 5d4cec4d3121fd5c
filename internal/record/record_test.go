package record

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

var t0 = time.UnixMilli(1_800_000_000_000)

func session(la int64, attrs map[string][]byte) *Item {
	return &Item{Principal: "alice", Created: t0.UnixMilli(), LastAccess: t0.UnixMilli() + la,
		MaxIdle: 1800, MaxLife: 28800, Site: "local", Writer: "w", Attrs: attrs}
}

func ver(n int, writer string) string { return Version(fmt.Sprintf("%016x", n), writer) }

// applyAll merges ops in the given order as the table would (Rev aside).
func applyAll(ops []Op, now time.Time) *Item {
	var cur *Item
	for _, op := range ops {
		if next, changed := Merge(cur, op, now, time.Minute); changed {
			cur = next
		}
	}
	if cur != nil {
		c := *cur
		c.Rev = 0
		return &c
	}
	return nil
}

// TestMergeConverges: every delivery order, with duplicates, gives the state of applying
// the ops in version order; a destroy anywhere leaves a tombstone.
func TestMergeConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := t0.Add(time.Minute)
	for round := range 2000 {
		var ops []Op
		n := 1 + rng.IntN(6)
		for i := range n {
			kind := Save
			if i == 0 {
				kind = Create
			}
			writer := []string{"a", "b"}[rng.IntN(2)]
			ops = append(ops, Op{Kind: kind, Key: "k", Version: ver(10+i, writer),
				Session: session(int64(i*1000), map[string][]byte{"n": {byte(i)}})})
		}
		destroyed := rng.IntN(3) == 0
		if destroyed {
			ops = append(ops, Op{Kind: Destroy, Key: "k", Version: ver(10+rng.IntN(n+2), "a")})
		}
		want := applyAll(ops, now) // in version order (as generated)

		// Deliver each op 1-3 times, in a random order.
		var delivered []Op
		for _, op := range ops {
			for range 1 + rng.IntN(3) {
				delivered = append(delivered, op)
			}
		}
		rng.Shuffle(len(delivered), func(i, j int) { delivered[i], delivered[j] = delivered[j], delivered[i] })
		got := applyAll(delivered, now)

		if destroyed {
			if got == nil || got.State != Destroyed {
				t.Fatalf("round %d: destroy delivered but state %+v", round, got)
			}
			if got.ExpiresAt < (t0.UnixMilli()+28800*1000)/1000 {
				t.Fatalf("round %d: tombstone expires at %d, before the session's max life", round, got.ExpiresAt)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: delivery order changed the result:\n got  %+v\n want %+v", round, got, want)
		}
	}
}

func TestMergeRules(t *testing.T) {
	now := t0.Add(time.Minute)
	create := Op{Kind: Create, Key: "k", Version: ver(1, "a"), Session: session(0, map[string][]byte{"x": []byte("1")})}
	cur, changed := Merge(nil, create, now, time.Minute)
	if !changed || cur.State != Active || !maps.EqualFunc(cur.Attrs, create.Session.Attrs, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("create on nothing: %+v changed=%v", cur, changed)
	}
	if _, changed := Merge(cur, create, now, time.Minute); changed {
		t.Error("a duplicate create changed the item")
	}
	stale := Op{Kind: Save, Key: "k", Version: ver(0, "z"), Session: session(0, nil)}
	if _, changed := Merge(cur, stale, now, time.Minute); changed {
		t.Error("an older save changed the item")
	}
	// An older save that saw a later access moves the last access only: the session was used.
	stale.Session = session(5, nil)
	if next, changed := Merge(cur, stale, now, time.Minute); !changed || next.LastAccess != cur.LastAccess+5 || len(next.Attrs) != 1 {
		t.Errorf("older save with a later access: %+v", next)
	}
	tomb, changed := Merge(cur, Op{Kind: Destroy, Key: "k", Version: ver(2, "b")}, now, time.Minute)
	if !changed || tomb.State != Destroyed || tomb.Readable(now) {
		t.Fatalf("destroy: %+v", tomb)
	}
	newer := Op{Kind: Save, Key: "k", Version: ver(99, "a"), Session: session(10, nil)}
	if next, _ := Merge(tomb, newer, now, time.Minute); next.State != Destroyed {
		t.Error("a newer save after a destroy revived the session")
	}
	// A destroy arriving before its create leaves a tombstone the create cannot pass.
	early, _ := Merge(nil, Op{Kind: Destroy, Key: "k", Version: ver(2, "b")}, now, time.Minute)
	late, changed := Merge(early, create, now, time.Minute)
	if late.State != Destroyed {
		t.Fatal("a create after its destroy revived the session")
	}
	if !changed || late.ExpiresAt < (create.Session.Created+create.Session.MaxLife*1000)/1000 {
		t.Errorf("the tombstone was not lengthened to outlive the session: %+v", late)
	}
	// A session already expired when its create arrives is not stored.
	old := Op{Kind: Create, Key: "k2", Version: ver(1, "a"), Session: session(0, nil)}
	if _, changed := Merge(nil, old, t0.Add(31*time.Minute), time.Minute); changed {
		t.Error("an expired create was stored")
	}
}

func TestReadableAndDeadline(t *testing.T) {
	it := session(0, nil)
	it.State = Active
	if want := t0.Add(30 * time.Minute); !it.Deadline().Equal(want) {
		t.Errorf("deadline %v, want idle limit %v", it.Deadline(), want)
	}
	it.LastAccess = t0.Add(7*time.Hour + 50*time.Minute).UnixMilli()
	if want := t0.Add(8 * time.Hour); !it.Deadline().Equal(want) {
		t.Errorf("deadline %v, want life limit %v", it.Deadline(), want)
	}
	if !it.Readable(t0.Add(8*time.Hour-time.Millisecond)) || it.Readable(t0.Add(8*time.Hour)) {
		t.Error("readable around the deadline is wrong")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	it := session(42, map[string][]byte{"cart": []byte(`["book"]`), "empty": {}})
	it.Key, it.Rev, it.Version, it.State, it.Group = "default#abc", 3, ver(7, "a"), Active, "sso-1"
	it.ExpiresAt = it.ttl()
	got, err := Unmarshal(Marshal(it))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, it) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, it)
	}
	tomb := &Item{Key: "default#abc", Rev: 4, Version: ver(8, "b"), State: Destroyed, ExpiresAt: 99}
	m := Marshal(tomb)
	if _, ok := m[attrPrincipal]; ok {
		t.Error("a tombstone keeps the principal")
	}
	if got, err := Unmarshal(m); err != nil || !reflect.DeepEqual(got, tomb) {
		t.Fatalf("tombstone round trip: %+v %v", got, err)
	}
	delete(m, attrState)
	if _, err := Unmarshal(m); err == nil {
		t.Error("an item without a state was accepted")
	}
}

// TestUserKey: an active session of a known user is in the per-user index (upk =
// cluster#principal); one without a principal is not, nor is a pending item or a
// tombstone, and a session without a principal reads back as one.
func TestUserKey(t *testing.T) {
	upk := func(it *Item) (string, bool) {
		v, ok := Marshal(it)[attrUserKey].(*types.AttributeValueMemberS)
		if !ok {
			return "", false
		}
		return v.Value, true
	}
	it := session(0, map[string][]byte{"scs": []byte("data")})
	it.Key, it.Version, it.State = "blue#abc", ver(1, "a"), Active
	if k, ok := upk(it); !ok || k != "blue#alice" {
		t.Errorf("active with a principal: upk %q %v, want blue#alice", k, ok)
	}
	pending := *it
	pending.State = Pending
	if k, ok := upk(&pending); ok {
		t.Errorf("pending: upk %q, want none", k)
	}
	anon := *it
	anon.Principal = ""
	if k, ok := upk(&anon); ok {
		t.Errorf("no principal: upk %q, want none", k)
	}
	got, err := Unmarshal(Marshal(&anon))
	if err != nil || !reflect.DeepEqual(got, &anon) {
		t.Fatalf("no principal round trip: %+v %v", got, err)
	}
}
