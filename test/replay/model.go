// Package replay proves the write path's guarantees by replay: random histories of
// session operations (creates, full saves, attribute deltas, destroys, from racing writers
// whose clocks are off by up to ten minutes each way, with metadata that changes from op
// to op as scsstore's commits change it), each op delivered one to three times in a random
// order, some of them late (after the functions' clock has jumped past the tombstone
// grace), applied by several concurrent appliers through the real merge and conditional
// writes against DynamoDB Local, and compared with an independent model that states what
// a correct store keeps.
package replay

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sessionha/sessionha/internal/record"
)

// World is what every session of a run shares: the functions' clock in each phase, and
// the store's rules' parameters.
type World struct {
	T0        time.Time     // the functions' clock while phase 1 (on-time deliveries) is applied
	T1        time.Time     // ... while phase 2 (late deliveries) is applied: past T0 + Grace
	Grace     time.Duration // the table's
	Tolerance time.Duration // the table's
	Budget    int           // register names a writer may cause between two of its snapshots
}

// State is what a reader sees of a session (or what the model says it must see).
type State struct {
	Destroyed bool
	// Reason is what a tombstone that must still be stored tells of its end: the reason
	// of the destroy of the lowest version the store took, whatever order they came in.
	Reason string
	// KeepTombstone: the tombstone must still be stored (an op of the session could still
	// be valid, or the destroy said so); otherwise it may be gone.
	KeepTombstone bool
	Readable      bool // active, a snapshot merged, not past its deadline
	// What a reader gets of a readable session.
	Attrs               map[string][]byte
	LastAccess, Created int64
	MaxIdle, MaxLife    int64
	Principal, Group    string
}

func (s State) String() string {
	if s.Destroyed {
		return fmt.Sprintf("destroyed %q (tombstone must stay: %v)", s.Reason, s.KeepTombstone)
	}
	if !s.Readable {
		return "not readable"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "readable principal=%s group=%q created=%d lastAccess=%d maxIdle=%d maxLife=%d attrs={",
		s.Principal, s.Group, s.Created, s.LastAccess, s.MaxIdle, s.MaxLife)
	for _, n := range slices.Sorted(maps.Keys(s.Attrs)) {
		fmt.Fprintf(&b, "%s:%q ", n, s.Attrs[n])
	}
	b.WriteString("}")
	return b.String()
}

// Observe turns a stored item into the State a reader sees at now. An item past its TTL
// counts as gone: DynamoDB may delete it at any moment after.
func Observe(it *record.Item, now time.Time) State {
	if it == nil || it.ExpiresAt*1000 <= now.UnixMilli() {
		return State{}
	}
	if it.State == record.Destroyed {
		return State{Destroyed: true, Reason: it.Reason}
	}
	if !it.Readable(now) {
		return State{}
	}
	return State{Readable: true, Attrs: it.Attrs, LastAccess: it.LastAccess, Created: it.Created,
		MaxIdle: it.MaxIdle, MaxLife: it.MaxLife, Principal: it.Principal, Group: it.Group}
}

// Matches reports whether a reader's observation got is what want allows.
func Matches(got, want State) bool {
	switch {
	case want.Destroyed && want.KeepTombstone:
		return got.Destroyed && got.Reason == want.Reason
	case want.Destroyed:
		return got.Destroyed || !got.Readable
	case got.Destroyed || got.Readable != want.Readable:
		return false
	case !want.Readable:
		return true
	}
	return got.LastAccess == want.LastAccess && got.Created == want.Created && got.MaxIdle == want.MaxIdle &&
		got.MaxLife == want.MaxLife && got.Principal == want.Principal && got.Group == want.Group &&
		maps.EqualFunc(got.Attrs, want.Attrs, bytes.Equal)
}

// MatchesAny reports whether got is one of the states want allows.
func MatchesAny(got State, want []State) bool {
	return slices.ContainsFunc(want, func(w State) bool { return Matches(got, w) })
}

// Delivery is one delivery of one of a history's ops, on time (phase 1) or late (phase 2).
type Delivery struct {
	Op   int // index in History.Ops
	Late bool
}

// The model. It shares no code with record.Merge, and states the rules as DESIGN.md and
// issue 12 put them:
//
//   - the session is the result of applying, in version order, the ops the store has
//     taken: a snapshot replaces all attributes, a delta sets and removes some; the
//     metadata is the newest op's; the last access is the greatest; a destroy is final;
//   - the store holds an op's times to its own clock: created and last access at most
//     the functions' now + Tolerance, as of the delivery that brought them;
//   - a session is over once the functions' now reaches its deadline (min(last access +
//     max idle, created + max life)): the store takes no op of it any more, so nothing
//     brings it back; an op on a session the store does not know, already past its own
//     deadline, leaves nothing;
//   - a tombstone stays while any op of its session could still be valid, and as long as
//     its destroy asked (until); it tells the reason of the destroy of the lowest version
//     the store took.
//
// Phase 1 is applied at T0, where no session of the generator can be over, so its
// deliveries commute; phase 2 at T1, where the order of the late deliveries can decide
// whether a session was over before one of them came: the model gives every outcome an
// order of them allows.

// model is the store's state of one session as the model sees it.
type model struct {
	destroyed bool
	destroy   *record.Op // of the destroys taken, the one of the lowest version
	taken     []taken    // deliveries the store took, in the order it took them
}

type taken struct {
	op *record.Op
	at int64 // the functions' clock when it was applied (unix ms)
}

// facts are what the taken deliveries make of the session, in version order.
type facts struct {
	principal, group                      string
	created, lastAccess, maxIdle, maxLife int64
	snapshot                              bool
	attrs                                 map[string][]byte
}

func (m *model) facts(w World) facts {
	var f facts
	tol := w.Tolerance.Milliseconds()
	var newest *record.Op
	for _, t := range m.taken {
		f.lastAccess = max(f.lastAccess, min(t.op.Session.LastAccess, t.at+tol))
		if newest == nil || t.op.Version > newest.Version {
			newest = t.op
		}
	}
	if newest == nil {
		return f
	}
	s := newest.Session
	f.principal, f.group, f.maxIdle, f.maxLife = s.Principal, s.Group, s.MaxIdle, s.MaxLife
	for _, t := range m.taken {
		if t.op == newest {
			f.created = max(f.created, min(s.Created, t.at+tol))
		}
	}
	ops := make([]*record.Op, 0, len(m.taken))
	for _, t := range m.taken {
		if !slices.Contains(ops, t.op) {
			ops = append(ops, t.op)
		}
	}
	slices.SortFunc(ops, func(a, b *record.Op) int { return strings.Compare(a.Version, b.Version) })
	for _, op := range ops {
		switch op.Kind {
		case record.Create, record.Save:
			f.snapshot = true
			f.attrs = maps.Clone(op.Session.Attrs)
		case record.Delta:
			if f.attrs == nil {
				f.attrs = map[string][]byte{}
			}
			for k, v := range op.Set {
				f.attrs[k] = v
			}
			for _, k := range op.Remove {
				delete(f.attrs, k)
			}
		}
	}
	return f
}

func (f facts) deadline() int64 {
	return min(f.lastAccess+f.maxIdle*1000, f.created+f.maxLife*1000)
}

// ownDeadline is the deadline of an op's session as its writer wrote it.
func ownDeadline(s *record.Item) int64 {
	return min(s.LastAccess+s.MaxIdle*1000, s.Created+s.MaxLife*1000)
}

// take applies one delivery at the functions' time at (unix ms) by the rules.
func (m *model) take(op *record.Op, at int64, w World) {
	switch {
	case op.Kind == record.Destroy:
		if m.destroy == nil || op.Version < m.destroy.Version {
			m.destroy = op
		}
		m.destroyed, m.taken = true, nil
	case m.destroyed:
	case len(m.taken) == 0:
		// Nothing stored: the op alone makes the session, unless it is already over.
		alone := model{taken: []taken{{op, at}}}
		if alone.facts(w).deadline() > at {
			m.taken = alone.taken
		}
	case m.facts(w).deadline() <= at:
		// Over: the store takes nothing more.
	default:
		m.taken = append(m.taken, taken{op, at})
	}
}

// state is what a reader must see at now.
func (m *model) state(h History, now time.Time, w World) State {
	if m.destroyed {
		return State{Destroyed: true, KeepTombstone: now.UnixMilli() < TombstoneKeep(h), Reason: m.destroy.Reason}
	}
	f := m.facts(w)
	if !f.snapshot || now.UnixMilli() >= f.deadline() {
		return State{}
	}
	return State{Readable: true, Attrs: f.attrs, LastAccess: f.lastAccess, Created: f.created,
		MaxIdle: f.maxIdle, MaxLife: f.maxLife, Principal: f.principal, Group: f.group}
}

// TombstoneKeep is until when (unix ms) a destroyed session's tombstone must stay: while
// any op of the session could still be valid, and as long as its destroys asked.
func TombstoneKeep(h History) int64 {
	keep := int64(0)
	for _, op := range h.Ops {
		if op.Kind == record.Destroy {
			keep = max(keep, op.Until)
		} else {
			keep = max(keep, ownDeadline(op.Session))
		}
	}
	return keep
}

// Expect is what the model says of a session after each phase.
type Expect struct {
	Phase1 State   // after the on-time deliveries, read at T0
	Final  []State // after the late ones too, read at T1: any of these
	// Whole: phase 2 ends with every op taken whatever its order (no destroy, never over),
	// so the stored item must hold no more registers than its writers' budgets allow.
	Whole bool
}

// Model says what a correct store holds of h after ds are delivered.
func Model(h History, ds []Delivery, w World) Expect {
	var m model
	var late []int
	t0, t1 := w.T0.UnixMilli(), w.T1.UnixMilli()
	// Phase 1: in version order (any order gives the same: nothing is over at T0).
	onTime := slices.DeleteFunc(slices.Clone(ds), func(d Delivery) bool { return d.Late })
	slices.SortStableFunc(onTime, func(a, b Delivery) int { return strings.Compare(h.Ops[a.Op].Version, h.Ops[b.Op].Version) })
	for _, d := range onTime {
		m.take(&h.Ops[d.Op], t0, w)
	}
	for i, d := range ds {
		if d.Late {
			late = append(late, i)
		}
	}
	e := Expect{Phase1: m.state(h, w.T0, w), Whole: true}
	seen := map[string]bool{}
	permute(late, func(order []int) {
		c := model{destroyed: m.destroyed, destroy: m.destroy, taken: slices.Clone(m.taken)}
		for _, i := range order {
			c.take(&h.Ops[ds[i].Op], t1, w)
		}
		st := c.state(h, w.T1, w)
		if k := st.String(); !seen[k] {
			seen[k] = true
			e.Final = append(e.Final, st)
		}
		if c.destroyed || !allTaken(h, c.taken) {
			e.Whole = false
		}
	})
	return e
}

func allTaken(h History, ts []taken) bool {
	for i := range h.Ops {
		if !slices.ContainsFunc(ts, func(t taken) bool { return t.op == &h.Ops[i] }) {
			return false
		}
	}
	return true
}

// permute calls f with every order of s (once, with s empty).
func permute(s []int, f func([]int)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(s) {
			f(s)
			return
		}
		for i := k; i < len(s); i++ {
			s[k], s[i] = s[i], s[k]
			rec(k + 1)
			s[k], s[i] = s[i], s[k]
		}
	}
	rec(0)
}
