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

var pol = Policy{Grace: time.Minute, Tolerance: 30 * time.Second}

func session(la int64, attrs map[string][]byte) *Item {
	return &Item{Principal: "alice", Created: t0.UnixMilli(), LastAccess: t0.UnixMilli() + la,
		MaxIdle: 1800, MaxLife: 28800, Site: "local", Writer: "w", Attrs: attrs}
}

func ver(n int, writer string) string { return Version(fmt.Sprintf("%016x", n), writer) }

// applyAll merges ops in the given order as the table would (Rev aside).
func applyAll(ops []Op, now time.Time) *Item {
	var cur *Item
	for _, op := range ops {
		if next, changed := Merge(cur, op, now, pol); changed {
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
			ops = append(ops, Op{Kind: Destroy, Key: "k", Version: ver(10+rng.IntN(n+2), "a"), Reason: "logout", Site: "eu"})
			if rng.IntN(2) == 0 { // a second destroy, by another instance, for another reason
				ops = append(ops, Op{Kind: Destroy, Key: "k", Version: ver(10+rng.IntN(n+2), "c"), Reason: "revoked", Site: "us"})
			}
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
			// Of several destroys the tombstone tells the one of the lowest version,
			// whatever order they came in.
			if got.Reason != want.Reason || got.Writer != want.Writer || got.Site != want.Site || got.DestroyVersion != want.DestroyVersion {
				t.Fatalf("round %d: tombstone says %q by %s of %s (destroy %s), in version order %q by %s of %s (destroy %s)", round,
					got.Reason, got.Writer, got.Site, got.DestroyVersion, want.Reason, want.Writer, want.Site, want.DestroyVersion)
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
	cur, changed := Merge(nil, create, now, pol)
	if !changed || cur.State != Active || !maps.EqualFunc(cur.Attrs, create.Session.Attrs, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("create on nothing: %+v changed=%v", cur, changed)
	}
	if _, changed := Merge(cur, create, now, pol); changed {
		t.Error("a duplicate create changed the item")
	}
	stale := Op{Kind: Save, Key: "k", Version: ver(0, "z"), Session: session(0, nil)}
	if _, changed := Merge(cur, stale, now, pol); changed {
		t.Error("an older save changed the item")
	}
	// An older save that saw a later access moves the last access only: the session was used.
	stale.Session = session(5, nil)
	if next, changed := Merge(cur, stale, now, pol); !changed || next.LastAccess != cur.LastAccess+5 || len(next.Attrs) != 1 {
		t.Errorf("older save with a later access: %+v", next)
	}
	tomb, changed := Merge(cur, Op{Kind: Destroy, Key: "k", Version: ver(2, "b")}, now, pol)
	if !changed || tomb.State != Destroyed || tomb.Readable(now) {
		t.Fatalf("destroy: %+v", tomb)
	}
	newer := Op{Kind: Save, Key: "k", Version: ver(99, "a"), Session: session(10, nil)}
	if next, _ := Merge(tomb, newer, now, pol); next.State != Destroyed {
		t.Error("a newer save after a destroy revived the session")
	}
	// A destroy arriving before its create leaves a tombstone the create cannot pass.
	early, _ := Merge(nil, Op{Kind: Destroy, Key: "k", Version: ver(2, "b")}, now, pol)
	late, changed := Merge(early, create, now, pol)
	if late.State != Destroyed {
		t.Fatal("a create after its destroy revived the session")
	}
	if !changed || late.ExpiresAt < (create.Session.Created+create.Session.MaxLife*1000)/1000 {
		t.Errorf("the tombstone was not lengthened to outlive the session: %+v", late)
	}
	// A session already expired when its create arrives is not stored.
	old := Op{Kind: Create, Key: "k2", Version: ver(1, "a"), Session: session(0, nil)}
	if _, changed := Merge(nil, old, t0.Add(31*time.Minute), pol); changed {
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
	it.ExpiresAt = pol.keep(it.deadline())
	got, err := Unmarshal(Marshal(it))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, it) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, it)
	}
	tomb := &Item{Key: "default#abc", Rev: 4, Version: ver(8, "b"), State: Destroyed, ExpiresAt: 99,
		Writer: "b", Site: "eu", Reason: "sso-group", DestroyVersion: ver(7, "b")}
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

// TestMergeMetadataFollowsNewestOp: created, the limits, principal and group are the
// newest op's, whatever the order of arrival. scsstore saves every commit as "created
// now, life = expiry - now", so the first commit's deadline must not stick (issue 12,
// defect 1).
func TestMergeMetadataFollowsNewestOp(t *testing.T) {
	now := t0.Add(30 * time.Second)
	commit := func(n int, at time.Duration, group string) Op {
		s := &Item{Principal: fmt.Sprintf("p%d", n), Group: group, Created: t0.Add(at).UnixMilli(), LastAccess: t0.Add(at).UnixMilli(),
			MaxIdle: 60, MaxLife: 60, Site: "s", Writer: "w", Attrs: map[string][]byte{"scs": {byte(n)}}}
		return Op{Kind: Save, Key: "k", Version: ver(n, "w"), Session: s}
	}
	first, second := commit(1, 0, "g1"), commit(2, 20*time.Second, "g2")
	for _, order := range [][]Op{{first, second}, {second, first}} {
		got := applyAll(order, now)
		if got == nil {
			t.Fatalf("order %s then %s: nothing stored", order[0].Version, order[1].Version)
		}
		if want := t0.Add(80 * time.Second); !got.Deadline().Equal(want) {
			t.Errorf("order %s then %s: deadline %v, want the newest commit's %v", order[0].Version, order[1].Version, got.Deadline(), want)
		}
		if later := t0.Add(70 * time.Second); !got.Readable(later) {
			t.Errorf("order %s then %s: not readable at %v, 50 s after the newest commit", order[0].Version, order[1].Version, later)
		}
		if got.Created != second.Session.Created || got.Principal != "p2" || got.Group != "g2" {
			t.Errorf("order %s then %s: metadata %q %q created %d, want the newest op's", order[0].Version, order[1].Version, got.Principal, got.Group, got.Created)
		}
	}
}

// TestMergeTombstoneKeepsUntil: a destroy that arrives before anything else of its session
// keeps its tombstone until the session's latest deadline it carries, not the grace only,
// so that a create redriven an hour later finds it (issue 12, defect 2).
func TestMergeTombstoneKeepsUntil(t *testing.T) {
	now := t0.Add(time.Second)
	until := t0.Add(8 * time.Hour).UnixMilli()
	tomb, changed := Merge(nil, Op{Kind: Destroy, Key: "k", Version: ver(9, "a"), Until: until}, now, pol)
	if !changed || tomb.State != Destroyed || tomb.ExpiresAt*1000 < until {
		t.Fatalf("tombstone %+v expires at %d, before the session's latest deadline %d", tomb, tomb.ExpiresAt*1000, until)
	}
	later := t0.Add(time.Hour)
	create := Op{Kind: Create, Key: "k", Version: ver(1, "a"), Session: session(0, map[string][]byte{"x": []byte("1")})}
	if got, _ := Merge(tomb, create, later, pol); got == nil || got.State != Destroyed || got.Readable(later) {
		t.Fatalf("a create an hour after its destroy: %+v", got)
	}
	// A destroy that knows nothing keeps the grace, and later ops of its session lengthen it.
	bare, _ := Merge(nil, Op{Kind: Destroy, Key: "k", Version: ver(9, "a")}, now, pol)
	if want := now.Add(pol.Grace).Unix(); bare.ExpiresAt < want {
		t.Errorf("a destroy without until expires at %d, want at least now + grace (%d)", bare.ExpiresAt, want)
	}
}

// TestMergeHoldsTimesToItsClock: an op's created and last access are clamped to the
// function's clock plus the tolerance, and a session past its stored deadline is never
// brought back, by a writer whose clock is behind or by a late op (issue 12, defect 3).
func TestMergeHoldsTimesToItsClock(t *testing.T) {
	now := t0.Add(time.Minute)
	ahead := now.Add(10 * time.Minute).UnixMilli()
	fast := Op{Kind: Create, Key: "k", Version: ver(1, "fast"), Session: &Item{Principal: "a", Created: ahead, LastAccess: ahead,
		MaxIdle: 600, MaxLife: 3600, Attrs: map[string][]byte{"x": []byte("1")}}}
	got, _ := Merge(nil, fast, now, pol)
	limit := now.Add(pol.Tolerance).UnixMilli()
	if got == nil || got.Created > limit || got.LastAccess > limit {
		t.Fatalf("a writer 10 min ahead stored created %d, last access %d; want at most now + tolerance (%d)", got.Created, got.LastAccess, limit)
	}
	if fast.Session.Created != ahead {
		t.Error("Merge changed the op it was given")
	}
	if d := got.Deadline(); d.After(now.Add(pol.Tolerance + 10*time.Minute)) {
		t.Errorf("deadline %v: stretched by the writer's skew", d)
	}

	// Expired at now + 11 min by the function's clock: a writer 10 min behind still
	// serves it, and saves it with its own time.
	later := now.Add(12 * time.Minute)
	behind := later.Add(-10 * time.Minute).UnixMilli()
	slow := Op{Kind: Save, Key: "k", Version: ver(2, "slow"), Session: &Item{Principal: "a", Created: got.Created, LastAccess: behind,
		MaxIdle: 600, MaxLife: 3600, Attrs: map[string][]byte{"x": []byte("2")}}}
	if next, changed := Merge(got, slow, later, pol); changed && next.Readable(later) {
		t.Fatalf("a writer 10 min behind brought back a session expired by the function's clock: %+v", next)
	}
}

// TestTombstoneTellsTheEnd: the tombstone keeps why, by whom and from which site its
// session was destroyed (the lifecycle function reads them from the table's stream), and
// nothing of the session; a tombstone of an older build, without them, still reads.
func TestTombstoneTellsTheEnd(t *testing.T) {
	now := t0.Add(time.Minute)
	cur, _ := Merge(nil, Op{Kind: Create, Key: "k", Version: ver(1, "a"), Session: session(0, map[string][]byte{"x": []byte("1")})}, now, pol)
	tomb, changed := Merge(cur, Op{Kind: Destroy, Key: "k", Version: ver(5, "b"), Reason: "session-cap", Site: "us"}, now, pol)
	if !changed || tomb.State != Destroyed || tomb.Reason != "session-cap" || tomb.Writer != "b" || tomb.Site != "us" || tomb.DestroyVersion != ver(5, "b") {
		t.Fatalf("tombstone %+v", tomb)
	}
	m := Marshal(tomb)
	for _, name := range []string{attrPrincipal, attrAttrs, attrCreated, attrUserKey} {
		if _, ok := m[name]; ok {
			t.Errorf("a tombstone keeps %q", name)
		}
	}
	if got, err := Unmarshal(m); err != nil || got.Reason != "session-cap" || got.Writer != "b" || got.Site != "us" {
		t.Fatalf("read back: %+v %v", got, err)
	}
	// A later destroy changes nothing; an earlier one (delivered late) takes over.
	if _, changed := Merge(tomb, Op{Kind: Destroy, Key: "k", Version: ver(6, "c"), Reason: "logout", Site: "eu"}, now, pol); changed {
		t.Error("a later destroy changed the tombstone")
	}
	early, changed := Merge(tomb, Op{Kind: Destroy, Key: "k", Version: ver(4, "c"), Reason: "logout", Site: "eu"}, now, pol)
	if !changed || early.Reason != "logout" || early.Writer != "c" || early.Site != "eu" {
		t.Errorf("an earlier destroy delivered late: %+v", early)
	}
	// A tombstone of an older build: no reason, no writer; a destroy completes it.
	old := &Item{Key: "k", Rev: 2, Version: ver(9, "a"), State: Destroyed, ExpiresAt: tomb.ExpiresAt}
	if got, err := Unmarshal(Marshal(old)); err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("an older tombstone: %+v %v", got, err)
	}
	if got, changed := Merge(old, Op{Kind: Destroy, Key: "k", Version: ver(9, "a"), Reason: "logout"}, now, pol); !changed || got.Reason != "logout" {
		t.Errorf("a destroy on an older tombstone: %+v changed=%v", got, changed)
	}
}
