package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/localtest"
)

var (
	histories = flag.Int("histories", 500, "random session histories to replay")
	seed      = flag.Uint64("seed", 0, "random seed (0: from the clock); a failure prints it")
	appliers  = flag.Int("appliers", 4, "concurrent appliers, as concurrent function instances")
	shown     = flag.Int("failures", 3, "sessions that differ from the model to describe, per phase")
)

// The store's rules as the functions run them by default.
const (
	grace     = record.DefaultGrace
	tolerance = record.DefaultTolerance
	budget    = 4 // register names per writer between its snapshots (small, to make many snapshots)
)

var db *dynamodb.Client

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var stop func()
	var err error
	if db, stop, err = localtest.DynamoDB(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

func newTable(t *testing.T, now func() time.Time) *record.Table {
	t.Helper()
	name := fmt.Sprintf("replay-%d", time.Now().UnixNano())
	if err := localtest.CreateSessionTable(context.Background(), db, name); err != nil {
		t.Fatal(err)
	}
	return &record.Table{DB: db, Name: name, Grace: grace, Tolerance: tolerance, Now: now, MaxAttempts: 50}
}

// delivery is one delivery of one session's op.
type delivery struct {
	h  int // index of the history
	op record.Op
}

// TestReplay applies random histories in two phases: at T0 the on-time deliveries, then,
// the functions' clock moved past the tombstone grace to T1, the late ones; each phase
// shuffled across sessions and applied by several concurrent appliers against DynamoDB
// Local. Every stored session is checked against the model after each phase, and a reader
// checks throughout that no destroyed session is ever readable again. `make soak` runs
// 10,000 histories.
func TestReplay(t *testing.T) {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(s, s^0x5e5510))
	t0 := time.Now().Truncate(time.Millisecond)
	w := World{T0: t0, T1: t0.Add(grace + time.Minute + time.Duration(rng.Int64N(int64(30*time.Minute)))),
		Grace: grace, Tolerance: tolerance, Budget: budget}
	var clock atomic.Int64 // the functions' clock: T0, then T1
	clock.Store(w.T0.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	tbl := newTable(t, now)

	hs := make([]History, *histories)
	dss := make([][]Delivery, *histories)
	want := make([]Expect, *histories)
	var phases [2][]delivery
	// Deliveries are shuffled within groups of a few sessions, so that the appliers mostly
	// work on the same sessions at once and race on their conditional writes.
	for start := 0; start < len(hs); start += *appliers {
		var group [2][]delivery
		for i := start; i < min(start+*appliers, len(hs)); i++ {
			hs[i] = Generate(rng, fmt.Sprintf("default#replay-%d", i), w)
			dss[i] = Deliveries(rng, hs[i])
			want[i] = Model(hs[i], dss[i], w)
			for _, d := range dss[i] {
				p := 0
				if d.Late {
					p = 1
				}
				group[p] = append(group[p], delivery{h: i, op: hs[i].Ops[d.Op]})
			}
		}
		for p := range group {
			rng.Shuffle(len(group[p]), func(i, j int) { group[p][i], group[p][j] = group[p][j], group[p][i] })
			phases[p] = append(phases[p], group[p]...)
		}
	}

	ctx := context.Background()
	var (
		reads, writes, conflicts, retried atomic.Int64
		destroyed                         sync.Map // key -> true once a destroy is applied
		revived                           atomic.Int64
	)
	// apply runs one phase's deliveries with the appliers while a reader checks that a
	// destroyed session is never readable again.
	apply := func(ds []delivery) {
		queue := make(chan delivery, len(ds))
		for _, d := range ds {
			queue <- d
		}
		var pending atomic.Int64
		pending.Store(int64(len(ds)))
		var wg sync.WaitGroup
		for range *appliers {
			wg.Go(func() {
				for pending.Load() > 0 {
					var d delivery
					select {
					case d = <-queue:
					default:
						time.Sleep(time.Millisecond) // only retries are left, in flight elsewhere
						continue
					}
					_, st, e := tbl.Apply(ctx, d.op)
					reads.Add(int64(st.Reads))
					writes.Add(int64(st.Writes))
					conflicts.Add(int64(st.Conflicts))
					if errors.Is(e, record.ErrContended) {
						retried.Add(1)
						queue <- d // as SQS would deliver it again
						continue
					}
					if e != nil {
						t.Errorf("apply: %v", e)
					}
					if d.op.Kind == record.Destroy {
						destroyed.Store(d.op.Key, true)
					}
					pending.Add(-1)
				}
			})
		}
		stop := make(chan struct{})
		var rwg sync.WaitGroup
		rwg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				destroyed.Range(func(k, _ any) bool {
					it, e := tbl.Get(ctx, k.(string))
					if e == nil && Observe(it, now()).Readable {
						revived.Add(1)
					}
					return true
				})
				time.Sleep(5 * time.Millisecond)
			}
		})
		wg.Wait()
		close(stop)
		rwg.Wait()
	}
	// check compares every stored session with what the model allows.
	check := func(phase string, at time.Time, allowed func(i int) []State) {
		failures := 0
		for i, h := range hs {
			it, e := tbl.Get(ctx, h.Key)
			if e != nil {
				t.Fatal(e)
			}
			got := Observe(it, at)
			ok := MatchesAny(got, allowed(i))
			if ok && phase == "phase 2" && want[i].Whole && it != nil {
				if n := len(it.AttrVers) + len(it.Removed); n > budget*h.DeltaWriters {
					t.Errorf("seed %d, session %s: %d attribute registers stored, over %d writers' budgets of %d\nhistory:\n%s",
						s, h.Key, n, h.DeltaWriters, budget, Describe(h, dss[i]))
				}
			}
			if ok {
				continue
			}
			failures++
			if failures > *shown {
				continue
			}
			var ws []string
			for _, st := range allowed(i) {
				ws = append(ws, st.String())
			}
			t.Errorf("seed %d, %s (clock %s), session %s: stored state differs from the model\n got  %s\n want %s\nhistory (as written):\n%sminimal sequential delivery that reproduces it:\n%s",
				s, phase, at.Sub(w.T0), h.Key, got, strings.Join(ws, "\n   or "), Describe(h, dss[i]), shrink(h, dss[i], w))
		}
		if failures > 0 {
			t.Errorf("%s: %d of %d sessions differ from the model (seed %d; rerun: go test ./test/replay -run TestReplay -seed %d -histories %d)",
				phase, failures, len(hs), s, s, *histories)
		}
	}

	apply(phases[0])
	check("phase 1", w.T0, func(i int) []State { return []State{want[i].Phase1} })
	clock.Store(w.T1.UnixMilli())
	apply(phases[1])
	check("phase 2", w.T1, func(i int) []State { return want[i].Final })
	if revived.Load() > 0 {
		t.Errorf("a destroyed session was readable again %d times (seed %d)", revived.Load(), s)
	}

	ops, deliveries := 0, len(phases[0])+len(phases[1])
	var destroyedN, readable, over, ambiguous int
	for i, h := range hs {
		ops += len(h.Ops)
		f := want[i].Final
		switch {
		case len(f) > 1:
			ambiguous++
		case f[0].Destroyed:
			destroyedN++
		case f[0].Readable:
			readable++
		default:
			over++
		}
	}
	t.Logf("seed %d: %d histories, %d distinct ops, %d deliveries (%d duplicates, %d late, clock jump %s), %d appliers; "+
		"DynamoDB %.2f reads and %.2f writes per delivery, %d conflicts, %d re-deliveries after contention; "+
		"at the end %d destroyed, %d readable, %d over or never readable, %d with an outcome the late order decides",
		s, len(hs), ops, deliveries, deliveries-ops, len(phases[1]), w.T1.Sub(w.T0).Round(time.Second), *appliers,
		float64(reads.Load())/float64(deliveries), float64(writes.Load())/float64(deliveries), conflicts.Load(), retried.Load(),
		destroyedN, readable, over, ambiguous)
}

// shrink looks for a small sequential delivery of h that the merge gets wrong: each
// phase's deliveries in some order at its clock, dropping deliveries while it still
// fails; if the merge alone is right (the failure needed concurrency), it says so.
func shrink(h History, ds []Delivery, w World) string {
	p := record.Policy{Grace: w.Grace, Tolerance: w.Tolerance}
	fails := func(ds []Delivery) bool {
		want := Model(h, ds, w)
		var cur *record.Item
		for _, late := range []bool{false, true} {
			now := w.T0
			if late {
				now = w.T1
				if !Matches(Observe(cur, w.T0), want.Phase1) {
					return true
				}
			}
			for _, d := range ds {
				if d.Late == late {
					if n, changed := record.Merge(cur, h.Ops[d.Op], now, p); changed {
						cur = n
					}
				}
			}
		}
		return !MatchesAny(Observe(cur, w.T1), want.Final)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 200 {
		cand := append([]Delivery(nil), ds...)
		rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
		if !fails(cand) {
			continue
		}
		for i := 0; i < len(cand); {
			smaller := append(append([]Delivery(nil), cand[:i]...), cand[i+1:]...)
			if len(smaller) > 0 && fails(smaller) {
				cand = smaller
			} else {
				i++
			}
		}
		var b strings.Builder
		for _, d := range cand {
			op := h.Ops[d.Op]
			phase := "T0"
			if d.Late {
				phase = "T1"
			}
			fmt.Fprintf(&b, "  at %s: %v %s\n", phase, map[record.OpKind]string{record.Create: "create", record.Save: "save", record.Delta: "delta", record.Destroy: "destroy"}[op.Kind], op.Version)
		}
		return b.String()
	}
	return "  (none found: the failure needed concurrent appliers)\n"
}
