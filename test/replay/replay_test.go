package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
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

func newTable(t *testing.T) *record.Table {
	t.Helper()
	name := fmt.Sprintf("replay-%d", time.Now().UnixNano())
	if err := localtest.CreateSessionTable(context.Background(), db, name); err != nil {
		t.Fatal(err)
	}
	return &record.Table{DB: db, Name: name, Grace: 10 * time.Minute, MaxAttempts: 50}
}

// TestReplay applies random histories, each op delivered 1-3 times in a random order
// interleaved across sessions, with several concurrent appliers against DynamoDB Local,
// and checks every stored session against the model. `make soak` runs 10,000.
func TestReplay(t *testing.T) {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(s, s^0x5e5510))
	now := time.Now()
	tbl := newTable(t)

	hs := make([]History, *histories)
	var all []record.Op
	// Deliveries are shuffled within groups of a few sessions, so that the appliers mostly
	// work on the same sessions at once and race on their conditional writes.
	for start := 0; start < len(hs); start += *appliers {
		var group []record.Op
		for i := start; i < min(start+*appliers, len(hs)); i++ {
			hs[i] = Generate(rng, fmt.Sprintf("default#replay-%d", i), now)
			group = append(group, Deliveries(rng, hs[i])...)
		}
		rng.Shuffle(len(group), func(i, j int) { group[i], group[j] = group[j], group[i] })
		all = append(all, group...)
	}
	queue := make(chan record.Op, len(all))
	for _, op := range all {
		queue <- op
	}
	var (
		pending                       = atomic.Int64{}
		reads, writes, conflicts, err atomic.Int64
		destroyed                     sync.Map // key -> true once a destroy is applied
		wg                            sync.WaitGroup
		retried                       atomic.Int64
	)
	pending.Store(int64(len(all)))
	ctx := context.Background()
	for range *appliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pending.Load() > 0 {
				var op record.Op
				select {
				case op = <-queue:
				default:
					time.Sleep(time.Millisecond) // only retries are left, in flight elsewhere
					continue
				}
				_, st, e := tbl.Apply(ctx, op)
				reads.Add(int64(st.Reads))
				writes.Add(int64(st.Writes))
				conflicts.Add(int64(st.Conflicts))
				if errors.Is(e, record.ErrContended) {
					retried.Add(1)
					queue <- op // as SQS would deliver it again
					continue
				}
				if e != nil {
					err.Add(1)
					t.Errorf("apply: %v", e)
				}
				if op.Kind == record.Destroy {
					destroyed.Store(op.Key, true)
				}
				pending.Add(-1)
			}
		}()
	}
	// A reader checks, while ops are still being applied, that a destroyed session is
	// never readable again.
	stop := make(chan struct{})
	var revived atomic.Int64
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			destroyed.Range(func(k, _ any) bool {
				it, e := tbl.Get(ctx, k.(string))
				if e == nil && it.Readable(time.Now()) {
					revived.Add(1)
				}
				return true
			})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	if revived.Load() > 0 {
		t.Errorf("a destroyed session was readable again %d times (seed %d)", revived.Load(), s)
	}

	var failures int
	for _, h := range hs {
		it, e := tbl.Get(ctx, h.Key)
		if e != nil {
			t.Fatal(e)
		}
		got, want := Observe(it, now), Model(h.Ops, now)
		if Equal(got, want) {
			continue
		}
		failures++
		if failures > 3 {
			continue
		}
		t.Errorf("seed %d, session %s: stored state differs from the model\n got  %s\n want %s\nhistory (as written):\n%sminimal sequential delivery that reproduces it:\n%s",
			s, h.Key, got, want, Describe(h.Ops), Describe(shrink(h, now)))
	}
	ops := len(all)
	t.Logf("seed %d: %d histories, %d distinct ops, %d deliveries (%d duplicates), %d appliers; DynamoDB %.2f reads and %.2f writes per delivery, %d conflicts, %d re-deliveries after contention",
		s, len(hs), countOps(hs), ops, ops-countOps(hs), *appliers,
		float64(reads.Load())/float64(ops), float64(writes.Load())/float64(ops), conflicts.Load(), retried.Load())
	if failures > 0 {
		t.Errorf("%d of %d sessions differ from the model (seed %d; rerun: go test ./test/replay -run TestReplay -seed %d)", failures, len(hs), s, s)
	}
}

func countOps(hs []History) (n int) {
	for _, h := range hs {
		n += len(h.Ops)
	}
	return n
}

// shrink looks for a small sequential delivery order of h's ops that the merge gets
// wrong, trying every permutation of ever smaller subsets as far as is cheap; if the
// merge alone is right (the failure needed concurrency), it returns the history itself.
func shrink(h History, now time.Time) []record.Op {
	fails := func(ops []record.Op) bool {
		var cur *record.Item
		for _, op := range ops {
			if n, changed := record.Merge(cur, op, now, time.Minute); changed {
				cur = n
			}
		}
		return !Equal(Observe(cur, now), Model(ops, now))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	best := h.Ops
	found := false
	for range 2000 {
		ops := Deliveries(rng, History{Ops: best})
		if fails(ops) {
			best, found = dedupe(ops), true
			// Drop ops one at a time while it still fails.
			for i := 0; i < len(best); {
				cand := append(append([]record.Op{}, best[:i]...), best[i+1:]...)
				if len(cand) > 0 && fails(cand) {
					best = cand
				} else {
					i++
				}
			}
		}
	}
	if !found {
		return h.Ops
	}
	return best
}

func dedupe(ops []record.Op) []record.Op {
	seen := map[string]bool{}
	var out []record.Op
	for _, op := range ops {
		if !seen[op.Version] {
			seen[op.Version] = true
			out = append(out, op)
		}
	}
	return out
}
