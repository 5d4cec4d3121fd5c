// Package replay proves the write path's guarantees by replay: random histories of
// session operations (creates, full saves, attribute deltas, destroys, from two racing
// writers), each op delivered one to three times in a random order, applied by several
// concurrent appliers through the real merge and conditional writes against DynamoDB
// Local, and compared with an independent model: the ops applied one by one in version
// order.
package replay

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sessionha/sessionha/internal/record"
)

// History is the ops of one session, in the order their writers made them.
type History struct {
	Key string
	Ops []record.Op
}

// State is what the model says the store must hold for a session.
type State struct {
	Destroyed  bool
	Readable   bool // a snapshot arrived, not destroyed, not expired
	Attrs      map[string][]byte
	LastAccess int64
}

func (s State) String() string {
	names := slices.Sorted(maps.Keys(s.Attrs))
	var b strings.Builder
	fmt.Fprintf(&b, "destroyed=%v readable=%v lastAccess=%d attrs={", s.Destroyed, s.Readable, s.LastAccess)
	for _, n := range names {
		fmt.Fprintf(&b, "%s:%q ", n, s.Attrs[n])
	}
	b.WriteString("}")
	return b.String()
}

// Model applies ops one by one in version order, the reference the stored item must equal.
// It shares no code with record.Merge.
func Model(ops []record.Op, now time.Time) State {
	sorted := slices.Clone(ops)
	slices.SortStableFunc(sorted, func(a, b record.Op) int { return strings.Compare(a.Version, b.Version) })
	var st State
	var snapshot bool
	var meta *record.Item
	for _, op := range sorted {
		if op.Kind == record.Destroy {
			st.Destroyed = true
			continue
		}
		if meta == nil {
			meta = op.Session
		}
		st.LastAccess = max(st.LastAccess, op.Session.LastAccess)
		switch op.Kind {
		case record.Create, record.Save:
			snapshot = true
			st.Attrs = maps.Clone(op.Session.Attrs)
		case record.Delta:
			if st.Attrs == nil {
				st.Attrs = map[string][]byte{}
			}
			for k, v := range op.Set {
				st.Attrs[k] = v
			}
			for _, k := range op.Remove {
				delete(st.Attrs, k)
			}
		}
	}
	if st.Destroyed {
		st.Attrs = nil
		return st
	}
	if meta != nil {
		idle := st.LastAccess + meta.MaxIdle*1000
		life := meta.Created + meta.MaxLife*1000
		st.Readable = snapshot && now.UnixMilli() < min(idle, life)
	}
	if !st.Readable {
		st.Attrs = nil
	}
	return st
}

// Observe turns a stored item into the State a reader sees.
func Observe(it *record.Item, now time.Time) State {
	if it == nil {
		return State{}
	}
	st := State{Destroyed: it.State == record.Destroyed, LastAccess: it.LastAccess}
	if st.Destroyed {
		st.LastAccess = 0
		return st
	}
	st.Readable = it.Readable(now)
	if st.Readable {
		st.Attrs = it.Attrs
	}
	return st
}

// Equal compares two states as a reader would see them.
func Equal(a, b State) bool {
	if a.Destroyed || b.Destroyed {
		return a.Destroyed == b.Destroyed
	}
	if a.Readable != b.Readable {
		return false
	}
	if !a.Readable {
		return true // neither is returned by any read
	}
	return a.LastAccess == b.LastAccess && maps.EqualFunc(a.Attrs, b.Attrs, bytes.Equal)
}

// Generate makes a random history for key: a create, then saves and deltas from a slow
// primary and a failed-over instance whose clocks interleave, sometimes a destroy, and
// sometimes no create at all reaching the store (an orphan delta history).
func Generate(rng *rand.Rand, key string, now time.Time) History {
	names := []string{"cart", "lang", "role", "theme", "step"}
	created := now.Add(-time.Duration(rng.IntN(60)) * time.Second).UnixMilli()
	meta := func(la int64) *record.Item {
		return &record.Item{Principal: "alice", Created: created, LastAccess: la, MaxIdle: 3600, MaxLife: 7200}
	}
	writers := []string{"primary", "failover"}
	hlc := uint64(created) << 16
	nextVer := func(w string) string {
		hlc += uint64(1 + rng.IntN(3)) // writers' clocks interleave; ties broken by writer id
		if rng.IntN(4) == 0 {
			return record.Version(fmt.Sprintf("%016x", hlc), writers[1-indexOf(writers, w)])
		}
		return record.Version(fmt.Sprintf("%016x", hlc), w)
	}
	value := func() []byte { return []byte(fmt.Sprintf("v%d", rng.IntN(1000))) }
	h := History{Key: key}
	la := created
	if rng.IntN(10) > 0 { // one history in ten has no create: deltas only
		attrs := map[string][]byte{}
		for _, n := range names[:rng.IntN(3)] {
			attrs[n] = value()
		}
		h.Ops = append(h.Ops, record.Op{Kind: record.Create, Key: key, Version: nextVer("primary"), Session: withAttrs(meta(la), attrs)})
	}
	for range 1 + rng.IntN(8) {
		w := writers[rng.IntN(2)]
		la += int64(rng.IntN(2000))
		switch r := rng.IntN(10); {
		case r < 3: // full save
			attrs := map[string][]byte{}
			for _, n := range names {
				if rng.IntN(2) == 0 {
					attrs[n] = value()
				}
			}
			h.Ops = append(h.Ops, record.Op{Kind: record.Save, Key: key, Version: nextVer(w), Session: withAttrs(meta(la), attrs)})
		default: // delta: set some, remove others (disjoint)
			op := record.Op{Kind: record.Delta, Key: key, Version: nextVer(w), Session: meta(la), Set: map[string][]byte{}}
			for _, n := range names {
				switch rng.IntN(4) {
				case 0:
					op.Set[n] = value()
				case 1:
					op.Remove = append(op.Remove, n)
				}
			}
			h.Ops = append(h.Ops, op)
		}
	}
	if rng.IntN(4) == 0 {
		h.Ops = append(h.Ops, record.Op{Kind: record.Destroy, Key: key, Version: nextVer(writers[rng.IntN(2)])})
	}
	return h
}

func withAttrs(it *record.Item, attrs map[string][]byte) *record.Item {
	it.Attrs = attrs
	return it
}

func indexOf(s []string, v string) int { return slices.Index(s, v) }

// Deliveries returns every op of h one to three times, shuffled.
func Deliveries(rng *rand.Rand, h History) []record.Op {
	var out []record.Op
	for _, op := range h.Ops {
		for range 1 + rng.IntN(3) {
			out = append(out, op)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Describe prints a history for a failure report.
func Describe(ops []record.Op) string {
	var b strings.Builder
	for _, op := range ops {
		kind := map[record.OpKind]string{record.Create: "create", record.Save: "save", record.Delta: "delta", record.Destroy: "destroy"}[op.Kind]
		fmt.Fprintf(&b, "  %-7s %s", kind, op.Version)
		if op.Session != nil {
			fmt.Fprintf(&b, " la=%d", op.Session.LastAccess)
			if op.Kind != record.Delta {
				fmt.Fprintf(&b, " attrs=%s", fmtAttrs(op.Session.Attrs))
			}
		}
		if op.Kind == record.Delta {
			fmt.Fprintf(&b, " set=%s remove=%v", fmtAttrs(op.Set), op.Remove)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func fmtAttrs(m map[string][]byte) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%s", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
