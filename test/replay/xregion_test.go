package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/replication"
)

// The cross-region replay: the histories of TestReplay, made by writers in two regions
// (a destroy followed, sometimes, by saves of an instance that has not heard of it) and
// applied by each region's own appliers against that region's replica of a global table
// (local/replication, a stand-in that behaves like DynamoDB's multi-region eventual
// consistency: per item, the later write wins in both replicas, and conditions are
// checked in the writing region only), while the link between the regions is cut and
// healed at random, and in one run of two cut from a random moment until the end: a
// split across the functions' clock jump, longer than the tombstone grace. It proves the
// write path's cross-region guarantee (issue 13):
//
//   - no resurrection: once a destroy has reached a region (it was applied there, or a
//     read there saw the session destroyed), no later read in that region returns the
//     session, whatever saves, deltas and duplicates are applied in either region, in
//     any order, across splits that heal later; nor later still: the logout outlives
//     every op of the session and every live session item beside it;
//   - convergence: once the link is healed and replication quiet, both replicas hold the
//     very same items.
//
// Readers in each region read the sessions with a destroy throughout, as a direct Load
// does (record.Table.Get, filtered for expiry and destroy). The final states are checked
// against TestReplay's model for what it can say across regions: a session with a
// destroy ends destroyed in both regions, and a session whose ops all went to one region
// ends as that model says. A failure prints its seed and, searched on fresh tables, the
// shortest sequential run of deliveries and replications found that reproduces it.

var (
	xHistories = flag.Int("xregion.histories", 200, "cross-region histories to replay (make soak runs 5,000)")
	xAppliers  = flag.Int("xregion.appliers", 2, "concurrent appliers per region")
	xLag       = flag.Duration("xregion.lag", 3*time.Millisecond, "replication lag between the regions (jitter ± two thirds of it)")
)

// xRegions are the two regions, as cdk.json's sites have them.
var xRegions = [2]string{"eu-west-1", "us-east-1"}

// regions is two local DynamoDB replicas, one per region, replicated like a global table.
type regions struct {
	db     [2]*dynamodb.Client
	rep    *replication.Replicator
	tables atomic.Int64 // tables made, for fresh names
}

func startRegions(t *testing.T, seed uint64) *regions {
	t.Helper()
	rs := &regions{}
	var replicas []*dynamo.Replica
	for i, name := range xRegions {
		r := dynamo.New(dynamo.Options{Region: name})
		srv, err := r.Listen("127.0.0.1:0")
		if err != nil {
			r.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(); r.Close() })
		rs.db[i] = dynamodb.New(dynamodb.Options{Region: name, BaseEndpoint: aws.String(srv.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
		replicas = append(replicas, r)
	}
	rep, err := replication.New(replicas, replication.Options{Lag: *xLag, Jitter: *xLag * 2 / 3, Seed: seed,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rep.Close)
	rs.rep = rep
	return rs
}

// newTables makes a table in both regions (a global table has a replica in each) and
// returns each region's record.Table on it, with the functions' clock now.
func (rs *regions) newTables(t *testing.T, prefix string, now func() time.Time) [2]*record.Table {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, rs.tables.Add(1))
	var tbls [2]*record.Table
	for i, db := range rs.db {
		if err := localtest.CreateSessionTable(context.Background(), db, name); err != nil {
			t.Fatal(err)
		}
		tbls[i] = &record.Table{DB: db, Name: name, Grace: grace, Tolerance: tolerance, Now: now, MaxAttempts: 50}
	}
	return tbls
}

// partition and heal cut and restore the link between the two regions.
func (rs *regions) partition(t *testing.T) {
	if err := rs.rep.Partition(xRegions[0], xRegions[1]); err != nil {
		t.Fatal(err)
	}
}

func (rs *regions) heal(t *testing.T) {
	if err := rs.rep.Heal(xRegions[0], xRegions[1]); err != nil {
		t.Fatal(err)
	}
}

func (rs *regions) quiesce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), localtest.Deadline)
	defer cancel()
	if err := rs.rep.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
}

// XDelivery is one delivery of a history's op, applied in one region.
type XDelivery struct {
	Delivery
	Region int // index in xRegions
}

// writerOf is the writer part of a version (clock/writer).
func writerOf(version string) string { _, w, _ := strings.Cut(version, "/"); return w }

// Place puts each of h's deliveries in a region: a writer publishes to its own site's
// ops queue, so an op is applied in its writer's region (the primary's, at random; the
// failed-over instance's, in the other region two times in three; the laggard's, at
// random). One copy in ten is applied in the other region anyway, so that duplicates of
// an op meet in both.
func Place(rng *rand.Rand, h History, ds []Delivery) []XDelivery {
	home := map[string]int{"primary": rng.IntN(2), "laggard": rng.IntN(2)}
	home["failover"] = home["primary"]
	if rng.IntN(3) > 0 {
		home["failover"] = 1 - home["primary"]
	}
	out := make([]XDelivery, len(ds))
	for i, d := range ds {
		r := home[writerOf(h.Ops[d.Op].Version)]
		if rng.IntN(10) == 0 {
			r = 1 - r
		}
		out[i] = XDelivery{Delivery: d, Region: r}
	}
	return out
}

// xdelivery is one delivery in a run: which history, which op, where.
type xdelivery struct {
	h      int
	op     record.Op
	region int
}

// reach records, per region, the sessions a destroy has reached there, and how.
type reach [2]sync.Map // key -> string

func (r *reach) mark(region int, key, how string) { r[region].LoadOrStore(key, how) }

func (r *reach) how(region int, key string) (string, bool) {
	v, ok := r[region].Load(key)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// TestCrossRegion replays random histories across two regions (see the comment at the top
// of this file). `make soak` runs 5,000.
func TestCrossRegion(t *testing.T) {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(s, s^0xc205))
	rs := startRegions(t, s)
	t0 := time.Now().Truncate(time.Millisecond)
	w := World{T0: t0, T1: t0.Add(grace + time.Minute + time.Duration(rng.Int64N(int64(30*time.Minute)))),
		Grace: grace, Tolerance: tolerance, Budget: budget}
	var clock atomic.Int64 // the functions' clock, in both regions: T0, then T1
	clock.Store(w.T0.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	tbls := rs.newTables(t, "xregion", now)

	n := *xHistories
	hs := make([]History, n)
	xds := make([][]XDelivery, n)
	want := make([]Expect, n)
	var phases [2][]xdelivery
	var candidates []string // sessions with a destroy: what the readers watch
	group := 2 * *xAppliers
	for start := 0; start < n; start += group {
		var g [2][]xdelivery
		for i := start; i < min(start+group, n); i++ {
			hs[i] = Generate(rng, fmt.Sprintf("default#xregion-%d", i), w)
			ds := Deliveries(rng, hs[i])
			xds[i] = Place(rng, hs[i], ds)
			want[i] = Model(hs[i], ds, w)
			want[i].Final = destroyedAnywhere(hs[i], xds[i], want[i].Final)
			if slices.ContainsFunc(hs[i].Ops, func(op record.Op) bool { return op.Kind == record.Destroy }) {
				candidates = append(candidates, hs[i].Key)
			}
			for _, d := range xds[i] {
				p := 0
				if d.Late {
					p = 1
				}
				g[p] = append(g[p], xdelivery{h: i, op: hs[i].Ops[d.Op], region: d.Region})
			}
		}
		for p := range g {
			rng.Shuffle(len(g[p]), func(i, j int) { g[p][i], g[p][j] = g[p][j], g[p][i] })
			phases[p] = append(phases[p], g[p]...)
		}
	}

	ctx := context.Background()
	var (
		reached              reach
		conflicts, retried   atomic.Int64
		reads, passes        [2]atomic.Int64
		partitions           atomic.Int64
		longest              atomic.Int64 // ns
		vmu                  sync.Mutex
		violations           = map[string]string{} // key -> first account
		violationCount       atomic.Int64
		stopReaders          = make(chan struct{})
		readersDone          sync.WaitGroup
		phaseName            atomic.Value
		readErrors, applyErr atomic.Int64
	)
	phaseName.Store("phase 1")
	// Readers: one per region, reading the sessions with a destroy as a direct Load does.
	for r := range xRegions {
		readersDone.Go(func() {
			rrng := rand.New(rand.NewPCG(s, uint64(r)+1))
			keys := slices.Clone(candidates)
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				rrng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
				for _, k := range keys {
					how, was := reached.how(r, k) // before the read: what it must already respect
					it, err := tbls[r].Get(ctx, k)
					reads[r].Add(1)
					if err != nil {
						if readErrors.Add(1) <= 3 {
							t.Errorf("read in %s: %v", xRegions[r], err)
						}
						continue
					}
					st := Observe(it, now())
					if was && st.Readable {
						violationCount.Add(1)
						vmu.Lock()
						if _, seen := violations[k]; !seen {
							violations[k] = fmt.Sprintf("%s, %s: a read returned the session after %s: %s",
								phaseName.Load(), xRegions[r], how, st)
						}
						vmu.Unlock()
					}
					if st.Destroyed {
						reached.mark(r, k, "a read there saw it destroyed")
					}
				}
				passes[r].Add(1)
				if len(keys) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}

	// The link: cut and healed at random while a phase runs (flapping), and in one run of
	// two also cut at a random moment of phase 1 for good, until after phase 2: a split
	// longer than the tombstone grace (the functions' clock jumps meanwhile), with both
	// regions taking ops.
	var (
		cut   bool
		since time.Time
	)
	cutLink := func() {
		if !cut {
			rs.partition(t)
			partitions.Add(1)
			cut, since = true, time.Now()
		}
	}
	healLink := func() {
		if cut {
			rs.heal(t)
			longest.Store(max(longest.Load(), int64(time.Since(since))))
			cut = false
		}
	}
	// split flaps the link until stop is closed, or until long says the long split
	// begins: then it cuts the link and leaves it cut.
	split := func(stop <-chan struct{}, prng *rand.Rand, long func() bool) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1+prng.IntN(12)) * time.Millisecond):
			}
			switch {
			case long():
				cutLink()
				return
			case cut:
				healLink()
			case prng.IntN(2) == 0:
				cutLink()
			}
		}
	}

	// apply runs one phase's deliveries with each region's appliers, the link cut and
	// healed meanwhile.
	apply := func(ds []xdelivery, prng *rand.Rand, flap bool, longAt int64) {
		var queues [2]chan xdelivery
		var pending atomic.Int64
		for r := range queues {
			queues[r] = make(chan xdelivery, len(ds))
		}
		for _, d := range ds {
			queues[d.region] <- d
		}
		pending.Store(int64(len(ds)))
		stop := make(chan struct{})
		var sw sync.WaitGroup
		if flap {
			sw.Go(func() { split(stop, prng, func() bool { return pending.Load() <= longAt }) })
		}
		var wg sync.WaitGroup
		for r := range queues {
			for range *xAppliers {
				wg.Go(func() {
					for pending.Load() > 0 {
						var d xdelivery
						select {
						case d = <-queues[r]:
						default:
							time.Sleep(time.Millisecond) // the other region's, or retries in flight
							continue
						}
						_, st, err := tbls[r].Apply(ctx, d.op)
						conflicts.Add(int64(st.Conflicts))
						if errors.Is(err, record.ErrContended) {
							retried.Add(1)
							queues[r] <- d // as SQS would deliver it again
							continue
						}
						if err != nil && applyErr.Add(1) <= 3 {
							t.Errorf("apply in %s: %v", xRegions[r], err)
						}
						if err == nil && d.op.Kind == record.Destroy {
							reached.mark(r, d.op.Key, "its destroy was applied there")
						}
						pending.Add(-1)
					}
				})
			}
		}
		wg.Wait()
		close(stop)
		sw.Wait()
	}

	prng := rand.New(rand.NewPCG(s, 0x5b11))
	longSplit := prng.IntN(2) == 0
	longAt := int64(-1) // pending deliveries of phase 1 when the long split begins
	if longSplit {
		longAt = prng.Int64N(int64(len(phases[0])) + 1)
	}
	apply(phases[0], prng, true, longAt)
	if longSplit {
		cutLink() // if phase 1 ended before the split began
	} else {
		healLink()
	}
	phaseName.Store("phase 2")
	clock.Store(w.T1.UnixMilli())
	apply(phases[1], prng, !longSplit, -1)
	healLink()
	rs.quiesce(t)
	phaseName.Store("after the heal")
	// A whole pass of each reader over the settled replicas, then stop them.
	for r := range xRegions {
		after := passes[r].Load() + 2
		localtest.Eventually(t, "a reader's pass over the settled replicas", func() (bool, string) {
			return passes[r].Load() >= after, fmt.Sprintf("%d passes", passes[r].Load())
		})
	}
	close(stopReaders)
	readersDone.Wait()

	// Final states: a destroyed session is destroyed in both regions; a session whose ops
	// all went to one region is what the single-region model says.
	failures := 0
	report := func(i int, format string, args ...any) {
		failures++
		if failures > *shown {
			return
		}
		t.Errorf("seed %d, session %s: %s\nhistory (as written, with where each delivery was applied):\n%s",
			s, hs[i].Key, fmt.Sprintf(format, args...), DescribeX(hs[i], xds[i]))
	}
	destroyedN, oneRegion := 0, 0
	for i, h := range hs {
		destroyed := slices.ContainsFunc(xds[i], func(d XDelivery) bool { return h.Ops[d.Op].Kind == record.Destroy })
		single := !slices.ContainsFunc(xds[i], func(d XDelivery) bool { return d.Region != xds[i][0].Region })
		if destroyed {
			destroyedN++
		}
		if single {
			oneRegion++
		}
		for r := range xRegions {
			stored, err := tbls[r].Read(ctx, h.Key)
			if err != nil {
				t.Fatal(err)
			}
			it := stored.Item() // as Get returns it
			got := Observe(it, w.T1)
			if destroyed {
				// Later too: the logout holds until no op of the session can be valid any
				// more, and outlives whatever live session item last-writer-wins left beside it.
				keep := TombstoneKeep(h)
				switch lo, si := stored.Logout, stored.Session; {
				case lo == nil:
					report(i, "after the heal, %s has no logout item", xRegions[r])
				case lo.ExpiresAt*1000 < keep:
					report(i, "after the heal, %s keeps the logout item until %d, before the session's ops could end (%d)", xRegions[r], lo.ExpiresAt*1000, keep)
				case si != nil && si.State != record.Destroyed && lo.ExpiresAt*1000 < si.Deadline().UnixMilli():
					report(i, "after the heal, %s keeps the logout item until %d, before the live session item beside it ends (%d)", xRegions[r], lo.ExpiresAt*1000, si.Deadline().UnixMilli())
				}
			}
			if (destroyed || single) && !MatchesAny(got, want[i].Final) {
				var ws []string
				for _, st := range want[i].Final {
					ws = append(ws, st.String())
				}
				report(i, "after the heal, %s holds %s; want %s", xRegions[r], got, strings.Join(ws, " or "))
			}
		}
	}

	// Convergence: both replicas hold the same items.
	items := [2]map[string]map[string]types.AttributeValue{}
	for r := range xRegions {
		items[r] = scanAll(t, rs.db[r], tbls[r].Name)
	}
	diverged := 0
	for _, k := range slices.Sorted(maps.Keys(items[0])) {
		if !reflect.DeepEqual(items[0][k], items[1][k]) {
			if diverged++; diverged <= *shown {
				t.Errorf("seed %d: item %s differs between the regions after the heal:\n %s: %v\n %s: %v", s, k, xRegions[0], items[0][k], xRegions[1], items[1][k])
			}
		}
	}
	for k := range items[1] {
		if _, ok := items[0][k]; !ok {
			if diverged++; diverged <= *shown {
				t.Errorf("seed %d: item %s is in %s only after the heal", s, k, xRegions[1])
			}
		}
	}

	// Resurrections: each with its history and, searched sequentially on fresh tables,
	// the shortest sequence of deliveries and replications found that reproduces one.
	if violationCount.Load() > 0 {
		keys := slices.Sorted(maps.Keys(violations))
		for j, k := range keys {
			if j >= *shown {
				break
			}
			i := slices.IndexFunc(hs, func(h History) bool { return h.Key == k })
			t.Errorf("seed %d, session %s: resurrected: %s\nhistory (as written, with where each delivery was applied):\n%sminimal sequential run that reproduces it:\n%s",
				s, k, violations[k], DescribeX(hs[i], xds[i]), rs.shrinkX(t, hs[i], xds[i], w))
		}
		t.Errorf("%d reads returned a session after its destroy had reached their region, in %d of %d sessions with a destroy (seed %d; rerun: go test ./test/replay -run TestCrossRegion -seed %d -xregion.histories %d)",
			violationCount.Load(), len(violations), len(candidates), s, s, n)
	}
	if failures > 0 || diverged > 0 {
		t.Errorf("%d final states differ from the model, %d items differ between the regions (seed %d; rerun: go test ./test/replay -run TestCrossRegion -seed %d -xregion.histories %d)",
			failures, diverged, s, s, n)
	}

	ops, deliveries, cross := 0, len(phases[0])+len(phases[1]), 0
	for i, h := range hs {
		ops += len(h.Ops)
		home := map[int]int{}
		for _, d := range xds[i] {
			home[d.Region]++
		}
		if len(home) > 1 {
			cross++
		}
	}
	rst := rs.rep.Stats()
	t.Logf("seed %d: %d histories (%d with ops applied in both regions, %d in one), %d distinct ops, %d deliveries (%d late, clock jump %s), %d appliers per region; "+
		"%d splits of the link (longest %s; one from the last %d deliveries of phase 1 across the clock jump to the end: %v), replication lag %s ± %s: %d changes applied, %d superseded by a later write, lag p50 %s p99 %s max %s; "+
		"%d conflicts, %d re-deliveries after contention; readers made %d reads in %s and %d in %s; at the end %d sessions destroyed, %d items in each region",
		s, n, cross, oneRegion, ops, deliveries, len(phases[1]), w.T1.Sub(w.T0).Round(time.Second), *xAppliers,
		partitions.Load(), time.Duration(longest.Load()).Round(time.Millisecond), max(longAt, 0), longSplit, *xLag, *xLag*2/3, rst.Applied, rst.Superseded,
		rst.Lag.P50, rst.Lag.P99, rst.Lag.Max, conflicts.Load(), retried.Load(), reads[0].Load(), xRegions[0], reads[1].Load(), xRegions[1],
		destroyedN, len(items[0]))
}

// scanAll reads every item of a table, strongly consistent, by key.
func scanAll(t *testing.T, db *dynamodb.Client, table string) map[string]map[string]types.AttributeValue {
	t.Helper()
	out := map[string]map[string]types.AttributeValue{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		page, err := db.Scan(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			out[it["pk"].(*types.AttributeValueMemberS).Value] = it
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// DescribeX is Describe with the region each delivery was applied in.
func DescribeX(h History, xds []XDelivery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  (%s)\n", h.Info)
	for i, op := range h.Ops {
		fmt.Fprintf(&b, "  %-7s %s", kindName(op.Kind), op.Version)
		if s := op.Session; s != nil {
			fmt.Fprintf(&b, " created=%d la=%d idle=%d life=%d", s.Created, s.LastAccess, s.MaxIdle, s.MaxLife)
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
		var where []string
		for _, d := range xds {
			if d.Op == i {
				when := "on time"
				if d.Late {
					when = "late"
				}
				where = append(where, xRegions[d.Region]+" "+when)
			}
		}
		fmt.Fprintf(&b, " [delivered: %s]\n", strings.Join(where, ", "))
	}
	return b.String()
}

func kindName(k record.OpKind) string {
	return map[record.OpKind]string{record.Create: "create", record.Save: "save", record.Delta: "delta", record.Destroy: "destroy"}[k]
}

// xstep is one step of a sequential run: a delivery applied in its region, or both
// regions' pending changes replicated.
type xstep struct {
	d    int // index in the history's deliveries; -1 for a replication
	sync bool
}

// shrinkX looks for a short sequential run of h's deliveries that resurrects the session:
// the link cut, each delivery applied in its region in some order (on-time ones at T0,
// then late ones at T1), with replications (heal, quiet, cut again) in between, on fresh
// tables; then drops steps while it still fails. Every step runs the real code against
// the two replicas.
func (rs *regions) shrinkX(t *testing.T, h History, xds []XDelivery, w World) string {
	rs.partition(t)
	defer rs.heal(t)
	rng := rand.New(rand.NewPCG(1, 1))
	deadline := time.Now().Add(time.Minute)
	var on, late []int
	for i, d := range xds {
		if d.Late {
			late = append(late, i)
		} else {
			on = append(on, i)
		}
	}
	for try := 0; try < 200 && time.Now().Before(deadline); try++ {
		var steps []xstep
		for _, group := range [][]int{on, late} {
			g := slices.Clone(group)
			rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
			for _, d := range g {
				steps = append(steps, xstep{d: d})
				if rng.IntN(3) == 0 {
					steps = append(steps, xstep{d: -1, sync: true})
				}
			}
		}
		failure := rs.runSteps(t, h, xds, steps, w)
		if failure == "" {
			continue
		}
		for i := 0; i < len(steps) && time.Now().Before(deadline); {
			smaller := append(slices.Clone(steps[:i]), steps[i+1:]...)
			if f := rs.runSteps(t, h, xds, smaller, w); f != "" {
				steps, failure = smaller, f
			} else {
				i++
			}
		}
		var b strings.Builder
		for _, st := range steps {
			if st.sync {
				b.WriteString("  replicate both ways (heal, quiet, cut)\n")
				continue
			}
			d := xds[st.d]
			op := h.Ops[d.Op]
			when := "T0"
			if d.Late {
				when = "T1"
			}
			fmt.Fprintf(&b, "  at %s in %s: %s %s\n", when, xRegions[d.Region], kindName(op.Kind), op.Version)
		}
		fmt.Fprintf(&b, "  then: %s\n", failure)
		return b.String()
	}
	return "  (none found: the failure needed concurrent appliers or a replication timing the search did not hit)\n"
}

// runSteps runs steps on fresh tables with the link cut (replicating only at sync steps)
// and returns how the session came back after its destroy had reached a region, or "".
func (rs *regions) runSteps(t *testing.T, h History, xds []XDelivery, steps []xstep, w World) string {
	var clock atomic.Int64
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	tbls := rs.newTables(t, "xshrink", now)
	ctx := context.Background()
	var reached [2]string
	check := func() string {
		for r := range xRegions {
			it, err := tbls[r].Get(ctx, h.Key)
			if err != nil {
				t.Fatal(err)
			}
			st := Observe(it, now())
			if reached[r] != "" && st.Readable {
				return fmt.Sprintf("a read in %s returns the session after %s", xRegions[r], reached[r])
			}
			if st.Destroyed && reached[r] == "" {
				reached[r] = "a read there saw it destroyed"
			}
		}
		return ""
	}
	for _, st := range steps {
		if st.sync {
			rs.heal(t)
			rs.quiesce(t)
			rs.partition(t)
		} else {
			d := xds[st.d]
			clock.Store(w.T0.UnixMilli())
			if d.Late {
				clock.Store(w.T1.UnixMilli())
			}
			op := h.Ops[d.Op]
			if _, _, err := tbls[d.Region].Apply(ctx, op); err != nil {
				t.Fatalf("apply in %s: %v", xRegions[d.Region], err)
			}
			if op.Kind == record.Destroy && reached[d.Region] == "" {
				reached[d.Region] = "its destroy was applied there"
			}
		}
		if f := check(); f != "" {
			return f
		}
	}
	rs.heal(t)
	rs.quiesce(t)
	rs.partition(t)
	return check()
}

// TestLogoutOutlivesASplit: a logout in one region, then a split longer than the
// tombstone grace during which the other region, which has not heard of the logout,
// keeps a sliding session (scs's, whose every commit is "created now, for another hour")
// alive; then the split heals. The session stays logged out in both regions for as long
// as the other region's session item could be valid: the logout item must outlive it,
// though no op comes after the heal to tell the table how long that is.
func TestLogoutOutlivesASplit(t *testing.T) {
	rs := startRegions(t, 1)
	t0 := time.Now().Truncate(time.Millisecond)
	t1 := t0.Add(grace + 15*time.Minute)
	var clock atomic.Int64
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	tbls := rs.newTables(t, "split", now)
	ctx := context.Background()
	key := "default#split"
	ver := func(n int, w string) string { return record.Version(fmt.Sprintf("%016x", n), w) }
	scs := func(at time.Time) *record.Item {
		return &record.Item{Principal: "scs", Created: at.UnixMilli(), LastAccess: at.UnixMilli(), MaxIdle: 3600, MaxLife: 3600}
	}
	apply := func(r int, at time.Time, op record.Op) {
		t.Helper()
		clock.Store(at.UnixMilli())
		if _, _, err := tbls[r].Apply(ctx, op); err != nil {
			t.Fatal(err)
		}
	}

	apply(0, t0, record.Op{Kind: record.Create, Key: key, Version: ver(1, "a"), Session: scs(t0)})
	rs.quiesce(t)
	rs.partition(t)
	// The logout in eu, which knows the session until an hour from now.
	apply(0, t0.Add(time.Second), record.Op{Kind: record.Destroy, Key: key, Version: ver(2, "a"), Until: t0.Add(time.Hour).UnixMilli()})
	// In us, cut off for longer than the grace, an instance still serves it and commits.
	apply(1, t1, record.Op{Kind: record.Save, Key: key, Version: ver(3, "b"), Session: scs(t1)})
	rs.heal(t)
	rs.quiesce(t)

	end := t1.Add(time.Hour) // the us commit's session could be valid until then
	for r := range xRegions {
		s, err := tbls[r].Read(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if s.Logout == nil {
			t.Fatalf("%s: no logout item after the heal", xRegions[r])
		}
		if s.Logout.ExpiresAt*1000 < end.UnixMilli() {
			t.Errorf("%s: the logout item is kept until %s, but the session item beside it (%s, deadline %s) could be valid until %s: TTL deletes the logout item first, and the session is back",
				xRegions[r], time.Unix(s.Logout.ExpiresAt, 0).Sub(t0), s.Session.State, s.Session.Deadline().Sub(t0), end.Sub(t0))
		}
		for _, at := range []time.Time{t1, end.Add(-time.Second)} {
			if st := Observe(s.Item(), at); st.Readable || !st.Destroyed {
				t.Errorf("%s at T0+%s: the session reads %s, want destroyed", xRegions[r], at.Sub(t0), st)
			}
		}
	}
}

// destroyedAnywhere widens the final states of a session destroyed in both regions: the
// single-region rule (of several destroys the lowest version tells why) holds where one
// table merges them, but two destroys applied in two regions within a replication lag
// each write their own logout item and tombstone, and last writer wins keeps one of
// them in both regions. Either destroy's reason is then right; that both regions agree
// is checked by convergence.
func destroyedAnywhere(h History, xds []XDelivery, final []State) []State {
	regions := map[int]bool{}
	for _, d := range xds {
		if h.Ops[d.Op].Kind == record.Destroy {
			regions[d.Region] = true
		}
	}
	if len(regions) < 2 {
		return final
	}
	out := slices.Clone(final)
	for _, st := range final {
		if !st.Destroyed {
			continue
		}
		for _, op := range h.Ops {
			if op.Kind == record.Destroy && op.Reason != st.Reason {
				alt := st
				alt.Reason = op.Reason
				out = append(out, alt)
			}
		}
	}
	return out
}
