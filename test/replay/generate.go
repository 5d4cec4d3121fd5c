package replay

import (
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
	// MadeLate marks the ops made after the functions' clock jumped (at T1): a writer
	// whose clock is behind still serving the session, and a destroy after it.
	MadeLate []bool
	// DeltaWriters is how many writers sent deltas: the stored item may hold a budget of
	// registers for each.
	DeltaWriters int
	Info         string // the world of the history, for failure reports
}

// maxLife is the generator's bound on a session's life: a destroy that knows nothing of
// its session says its tombstone must outlive now + maxLife, as the client does with
// Config.MaxSessionLife.
const maxLife = 3 * time.Hour

// Generate makes a random history for key, in a world whose functions' clock reads T0
// and later T1:
//
//   - writers (a primary, a failed-over instance, sometimes a laggard) each with its own
//     clock skew of up to ±10 minutes: their ops carry their clocks' times;
//   - "fixed" sessions (the client: created and limits set once, the last access moving)
//     or "scs" sessions (scsstore: every commit saved whole as created now with
//     life = idle = expiry - now, so that created and the limits change from op to op);
//   - a create (or, one history in ten of fixed ones, none reaching the store: deltas
//     only), then saves and deltas; the group changes now and then; each writer sends a
//     snapshot instead of a delta once its deltas since its last snapshot would name more
//     than Budget attributes, as the client bounds the registers it causes;
//   - sometimes a laggard, 1-10 minutes behind, that still serves the session at T1 and
//     saves it; sometimes a destroy at the end, carrying the latest deadline its writer
//     knows (the newest op's created + max life) or, one in four, an upper bound, and its
//     reason; one in three of those a second destroy, by another writer, for another
//     reason;
//   - after half the other destroys, saves or deltas by the other writer, which has not
//     heard of the logout (another region's instance, before the logout reaches it or cut
//     off by a split): seconds later, or at T1.
//
// Nothing a history makes is over at T0: every deadline is at least minutes ahead.
func Generate(rng *rand.Rand, key string, w World) History {
	h := History{Key: key}
	skew := map[string]time.Duration{}
	for _, wr := range []string{"primary", "failover"} {
		if rng.IntN(3) > 0 {
			skew[wr] = time.Duration(rng.Int64N(int64(20*time.Minute))) - 10*time.Minute
		}
	}
	skew["laggard"] = -time.Minute - time.Duration(rng.Int64N(int64(9*time.Minute)))
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	clock := func(wr string, tt time.Time) int64 { return ms(tt.Add(skew[wr])) }

	scs := rng.IntN(2) == 0
	idle := []time.Duration{15 * time.Minute, 30 * time.Minute, 60 * time.Minute}[rng.IntN(3)]
	life := idle + 25*time.Minute + time.Duration(rng.Int64N(int64(60*time.Minute)))
	tt := w.T0.Add(-time.Duration(rng.Int64N(int64(time.Minute)))) // true time of the first op
	created := clock("primary", tt)
	lifeEnd := created + life.Milliseconds() // scs: the lifetime deadline, in its data
	principal := "alice"
	if scs {
		principal = "scs"
	}
	group := ""
	h.Info = fmt.Sprintf("scs=%v idle=%s life=%s skew primary=%s failover=%s laggard=%s", scs, idle, life.Round(time.Second),
		skew["primary"], skew["failover"], skew["laggard"])

	// meta is the session as writer wr writes it at true time tt; nil if wr would see it
	// over (an scs commit after the lifetime: scs deletes the session instead).
	meta := func(wr string, tt time.Time) *record.Item {
		now := clock(wr, tt)
		if rng.IntN(6) == 0 {
			group = []string{"", "g1", "g2"}[rng.IntN(3)]
		}
		if scs {
			expiry := min(now+idle.Milliseconds(), lifeEnd)
			if expiry <= now {
				return nil
			}
			secs := (expiry - now + 1 + 999) / 1000 // scsstore: whole seconds, rounded up
			return &record.Item{Principal: principal, Group: group, Created: now, LastAccess: now, MaxIdle: secs, MaxLife: secs}
		}
		return &record.Item{Principal: principal, Group: group, Created: created, LastAccess: max(now, created),
			MaxIdle: int64(idle / time.Second), MaxLife: int64(life / time.Second)}
	}

	hlc := uint64(created) << 16
	used := map[string]uint64{} // each writer's last clock reading: versions are unique
	nextVer := func(wr string) string {
		// Writers' clocks interleave; now and then two share a clock reading and the
		// writer id decides.
		if used[wr] == hlc || rng.IntN(5) > 0 {
			hlc += uint64(1 + rng.IntN(3))
		}
		used[wr] = hlc
		return record.Version(fmt.Sprintf("%016x", hlc), wr)
	}
	names := []string{"cart", "lang", "role", "theme", "step", "n0", "n1", "n2", "n3", "n4", "n5"}
	value := func() []byte { return []byte(fmt.Sprintf("v%d", rng.IntN(1000))) }
	someAttrs := func(k int) map[string][]byte {
		attrs := map[string][]byte{}
		for range k {
			attrs[names[rng.IntN(len(names))]] = value()
		}
		return attrs
	}
	regs := map[string]map[string]bool{} // per writer: names of its deltas since its last snapshot
	deltaWriters := map[string]bool{}
	add := func(op record.Op, late bool) {
		h.Ops = append(h.Ops, op)
		h.MadeLate = append(h.MadeLate, late)
	}
	// op makes a save or a delta by wr at true time tt.
	op := func(wr string, tt time.Time, late bool) {
		m := meta(wr, tt)
		if m == nil {
			return
		}
		if scs || rng.IntN(10) < 3 {
			regs[wr] = nil
			add(record.Op{Kind: record.Save, Key: key, Version: nextVer(wr), Session: withAttrs(m, someAttrs(rng.IntN(6)))}, late)
			return
		}
		d := record.Op{Kind: record.Delta, Key: key, Session: m, Set: map[string][]byte{}}
		for range 1 + rng.IntN(3) {
			n := names[rng.IntN(len(names))]
			if _, set := d.Set[n]; set || slices.Contains(d.Remove, n) {
				continue
			}
			if rng.IntN(2) == 0 {
				d.Set[n] = value()
			} else {
				d.Remove = append(d.Remove, n)
			}
		}
		caused := maps.Clone(regs[wr])
		if caused == nil {
			caused = map[string]bool{}
		}
		for n := range d.Set {
			caused[n] = true
		}
		for _, n := range d.Remove {
			caused[n] = true
		}
		if len(caused) > w.Budget {
			// Over the budget: the whole session instead, which drops the registers.
			regs[wr] = nil
			add(record.Op{Kind: record.Save, Key: key, Version: nextVer(wr), Session: withAttrs(m, someAttrs(rng.IntN(6)))}, late)
			return
		}
		regs[wr], deltaWriters[wr] = caused, true
		d.Version = nextVer(wr)
		add(d, late)
	}

	if scs || rng.IntN(10) > 0 {
		add(record.Op{Kind: record.Create, Key: key, Version: nextVer("primary"), Session: withAttrs(meta("primary", tt), someAttrs(rng.IntN(3)))}, false)
	}
	for range 1 + rng.IntN(8) {
		tt = tt.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		op([]string{"primary", "failover"}[rng.IntN(2)], tt, false)
	}
	// At T1 the laggard, whose clock is behind, may still serve the session and save it:
	// if by its clock the session has not ended yet (a client refuses to save a session it
	// sees expired), though by the functions' it may have.
	at := w.T1.Add(-time.Duration(rng.IntN(30000)) * time.Millisecond)
	straggler := rng.IntN(6) == 0 && len(h.Ops) > 0 && clock("laggard", at) < viewDeadline(h.Ops)
	if straggler {
		op("laggard", at, true)
	}
	if rng.IntN(4) == 0 && len(h.Ops) > 0 {
		wr := []string{"primary", "failover"}[rng.IntN(2)]
		at := tt.Add(time.Second)
		if straggler {
			wr, at = "laggard", w.T1
		}
		newest := slices.MaxFunc(h.Ops, func(a, b record.Op) int { return strings.Compare(a.Version, b.Version) })
		until := newest.Session.Created + newest.Session.MaxLife*1000
		if rng.IntN(4) == 0 {
			until = clock(wr, at) + maxLife.Milliseconds() // knows nothing of the session: the bound
		}
		seen := viewDeadline(h.Ops) // before the destroy, which has no session
		add(record.Op{Kind: record.Destroy, Key: key, Version: nextVer(wr), Until: until, Reason: "logout", Site: "site-" + wr}, straggler)
		other := map[string]string{"primary": "failover", "failover": "primary", "laggard": "primary"}[wr]
		switch {
		case rng.IntN(3) == 0:
			// Another instance destroys it too, for another reason (an operator's revoke
			// racing the logout): the tombstone must tell the same one whatever the order.
			add(record.Op{Kind: record.Destroy, Key: key, Version: nextVer(other), Until: until, Reason: "revoked", Site: "site-" + other}, straggler)
		case !straggler && rng.IntN(2) == 0:
			// Another instance, which has not heard of the logout, keeps using the session
			// after it: another region's, while the logout's notice and replication are on
			// their way, or cut off by a split. A few seconds after the logout, or at T1, a
			// split having lasted past the grace (if its clock says the session is still
			// alive: a client does not save a session it sees expired).
			for range 1 + rng.IntN(2) {
				late := rng.IntN(2) == 0
				when := at.Add(time.Duration(500+rng.IntN(5000)) * time.Millisecond)
				if late {
					when = w.T1.Add(-time.Duration(rng.IntN(30000)) * time.Millisecond)
				}
				if clock(other, when) < seen {
					op(other, when, late)
				}
			}
		}
	}
	h.DeltaWriters = len(deltaWriters)
	return h
}

// viewDeadline is the deadline of the session as a writer holding its newest state sees
// it: the newest op's metadata and the latest last access.
func viewDeadline(ops []record.Op) int64 {
	newest := slices.MaxFunc(ops, func(a, b record.Op) int { return strings.Compare(a.Version, b.Version) })
	la := int64(0)
	for _, op := range ops {
		la = max(la, op.Session.LastAccess)
	}
	s := newest.Session
	return min(la+s.MaxIdle*1000, s.Created+s.MaxLife*1000)
}

func withAttrs(it *record.Item, attrs map[string][]byte) *record.Item {
	it.Attrs = attrs
	return it
}

// maxLate bounds a session's late deliveries, whose every order the model tries.
const maxLate = 5

// Deliveries returns every op of h one to three times, shuffled, each on time or late: most
// histories are delivered on time; some have random late redeliveries, some a destroy
// that comes first with (nearly) everything else late, some everything late. Ops made
// late are delivered late.
func Deliveries(rng *rand.Rand, h History) []Delivery {
	scenario := rng.IntN(20)
	d := slices.IndexFunc(h.Ops, func(op record.Op) bool { return op.Kind == record.Destroy })
	destroyFirst := scenario >= 17 && scenario < 19 && d >= 0 && !h.MadeLate[d]
	var out []Delivery
	lateCount := 0
	for i, op := range h.Ops {
		copies := 1 + rng.IntN(3)
		if h.MadeLate[i] {
			copies = min(copies, 2)
		}
		for range copies {
			late := h.MadeLate[i]
			switch {
			case late:
			case destroyFirst:
				late = op.Kind != record.Destroy
			case scenario >= 19:
				late = true
			case scenario >= 13:
				late = rng.IntN(10) < 3
			}
			out = append(out, Delivery{Op: i, Late: late})
			if late {
				lateCount++
			}
		}
	}
	// Keep the late ones few (the model tries all their orders): the last made go on time.
	for i := len(out) - 1; i >= 0 && lateCount > maxLate; i-- {
		if out[i].Late && !h.MadeLate[out[i].Op] {
			out[i].Late = false
			lateCount--
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Describe prints a history and its deliveries for a failure report.
func Describe(h History, ds []Delivery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  (%s)\n", h.Info)
	for i, op := range h.Ops {
		kind := map[record.OpKind]string{record.Create: "create", record.Save: "save", record.Delta: "delta", record.Destroy: "destroy"}[op.Kind]
		fmt.Fprintf(&b, "  %-7s %s", kind, op.Version)
		if s := op.Session; s != nil {
			fmt.Fprintf(&b, " %s/%q created=%d la=%d idle=%d life=%d", s.Principal, s.Group, s.Created, s.LastAccess, s.MaxIdle, s.MaxLife)
			if op.Kind != record.Delta {
				fmt.Fprintf(&b, " attrs=%s", fmtAttrs(s.Attrs))
			}
		}
		if op.Kind == record.Delta {
			fmt.Fprintf(&b, " set=%s remove=%v", fmtAttrs(op.Set), op.Remove)
		}
		if op.Kind == record.Destroy {
			fmt.Fprintf(&b, " until=%d reason=%s", op.Until, op.Reason)
		}
		var on, late int
		for _, d := range ds {
			if d.Op == i && d.Late {
				late++
			} else if d.Op == i {
				on++
			}
		}
		fmt.Fprintf(&b, " [delivered %d on time, %d late]\n", on, late)
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
