package replication_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/replication"
)

// A write in one region is readable in another after the lag, and not before.
func TestWriteArrivesAfterLag(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	const lag, jitter = time.Second, 100 * time.Millisecond
	rp := replicate(t, rs, replication.Options{Lag: lag, Jitter: jitter, Seed: 1})
	start := time.Now()
	put(t, a, "k", "from-a")
	if got := get(t, b, "k"); got != "" {
		t.Fatalf("B holds %q right after the write in A: want nothing before the lag", got)
	}
	if st := rp.Stats(); st.Deliveries != 1 || st.Pending != 1 || st.Delivered != 0 {
		t.Errorf("right after the write: %+v, want 1 delivery pending", st)
	}
	var seen time.Duration
	localtest.Eventually(t, "A's write readable in B", func() (bool, string) {
		got := get(t, b, "k")
		seen = time.Since(start)
		return got == "from-a", fmt.Sprintf("B holds %q", got)
	})
	if seen < lag-jitter {
		t.Errorf("B read A's write %s after it was made: before the least lag, %s", seen, lag-jitter)
	}
	st := rp.Stats()
	if st.Delivered != 1 || st.Applied != 1 || st.Pending != 0 || st.Lag.Samples != 1 || st.Lag.Min < lag-jitter {
		t.Errorf("after delivery: %+v, want 1 applied with a lag of at least %s", st, lag-jitter)
	}
	if got := get(t, a, "k"); got != "from-a" {
		t.Errorf("A holds %q, want its own write", got)
	}
}

// Every kind of write reaches every other region: put, update, batch, transaction,
// delete and TTL deletion. Replicated changes are not sent on again.
func TestEveryWriteReplicates(t *testing.T) {
	rs := startRegions(t, 3)
	a, b, c := rs[0], rs[1], rs[2]
	rp := replicate(t, rs, replication.Options{Lag: 2 * time.Millisecond, Jitter: time.Millisecond, Seed: 2})
	ctx := context.Background()
	tbl := aws.String(table)
	steps := []struct {
		what  string
		write func() error
		want  map[string]string // key -> v ("" for absent)
	}{
		{"put in A", func() error {
			_, err := a.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: map[string]types.AttributeValue{"pk": s("k"), "v": s("put")}})
			return err
		}, map[string]string{"k": "put"}},
		{"update in B", func() error {
			_, err := b.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: tbl, Key: key("k"),
				UpdateExpression:          aws.String("SET v = :v ADD n :one"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("updated"), ":one": n("1")}})
			return err
		}, map[string]string{"k": "updated"}},
		{"batch in C", func() error {
			_, err := c.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: {
				{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s("x"), "v": s("batch")}}},
				{DeleteRequest: &types.DeleteRequest{Key: key("k")}},
			}}})
			return err
		}, map[string]string{"k": "", "x": "batch"}},
		{"transaction in A", func() error {
			_, err := a.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
				{Put: &types.Put{TableName: tbl, Item: map[string]types.AttributeValue{"pk": s("t"), "v": s("transaction")}}},
				{Update: &types.Update{TableName: tbl, Key: key("x"), UpdateExpression: aws.String("SET v = :v"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("transacted")}}},
			}})
			return err
		}, map[string]string{"t": "transaction", "x": "transacted"}},
		{"delete in B", func() error {
			_, err := b.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: tbl, Key: key("t")})
			return err
		}, map[string]string{"t": "", "x": "transacted"}},
		{"expired put in C", func() error {
			_, err := c.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tbl, Item: map[string]types.AttributeValue{
				"pk": s("e"), "v": s("expired"), "exp": n(strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10))}})
			return err
		}, map[string]string{"e": "expired"}},
		{"TTL sweep in C", func() error {
			if got := c.replica.Sweep(); got != 1 {
				return fmt.Errorf("sweep deleted %d items, want 1", got)
			}
			return nil
		}, map[string]string{"e": "", "x": "transacted"}},
	}
	for _, step := range steps {
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		quiesce(t, rp)
		for _, r := range rs {
			for k, want := range step.want {
				if got := get(t, r, k); got != want {
					t.Errorf("after %s: %s holds %s = %q, want %q", step.what, r.name, k, got, want)
				}
			}
		}
		if d := diff(scan(t, b), scan(t, a)); d != "" {
			t.Errorf("after %s, B differs from A:%s", step.what, d)
		}
		if d := diff(scan(t, c), scan(t, a)); d != "" {
			t.Errorf("after %s, C differs from A:%s", step.what, d)
		}
	}
	own := 0
	for _, r := range rs {
		own += len(r.changes())
	}
	st := rp.Stats()
	if own != 9 || st.Deliveries != int64(2*own) || st.Applied != st.Deliveries {
		t.Errorf("%d changes made, stats %+v: want 9 changes, each applied in the 2 other regions and no more", own, st)
	}
	checkBalance(t, st)
}

// Two writes to one item made in two regions within the lag converge, in both, to the
// later one, whichever arrives last.
func TestConcurrentWritesConverge(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	rp := replicate(t, rs, replication.Options{Lag: time.Second, Jitter: 100 * time.Millisecond, Seed: 3})
	put(t, a, "k1", "a-first")
	put(t, b, "k1", "b-second")
	put(t, b, "k2", "b-first")
	put(t, a, "k2", "a-second")
	quiesce(t, rp)
	want := map[string]string{"k1": "b-second", "k2": "a-second"}
	// The test made them in that order; the feeds' write times must agree.
	at := map[string]map[string]time.Time{}
	for _, r := range rs {
		for _, c := range r.changes() {
			if at[keyOf(c)] == nil {
				at[keyOf(c)] = map[string]time.Time{}
			}
			at[keyOf(c)][r.name] = c.At
		}
	}
	if !at["k1"][b.name].After(at["k1"][a.name]) || !at["k2"][a.name].After(at["k2"][b.name]) {
		t.Fatalf("write times %v: want the second write of each item later", at)
	}
	for _, r := range rs {
		for k, w := range want {
			if got := get(t, r, k); got != w {
				t.Errorf("%s holds %s = %q, want the later write %q", r.name, k, got, w)
			}
		}
	}
	st := rp.Stats()
	if st.Delivered != 4 || st.Applied+st.Superseded != 4 {
		t.Errorf("stats %+v: want 4 deliveries", st)
	}
	checkBalance(t, st)
}

// A partition holds changes back, both ways, long after the lag; a heal delivers them.
func TestPartitionHoldsAndHealDelivers(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	const lag, jitter = 20 * time.Millisecond, 10 * time.Millisecond
	rp := replicate(t, rs, replication.Options{Lag: lag, Jitter: jitter, Seed: 4})
	if err := rp.Partition(a.name, b.name); err != nil {
		t.Fatal(err)
	}
	if err := rp.Partition(b.name, a.name); err != nil {
		t.Fatalf("partitioning again: %v, want nothing to change", err)
	}
	put(t, a, "ka", "from-a")
	put(t, b, "kb", "from-b")
	written := time.Now()
	for time.Since(written) < 20*(lag+jitter) { // a check that nothing arrives, not a wait
		if ga, gb := get(t, b, "ka"), get(t, a, "kb"); ga != "" || gb != "" {
			t.Fatalf("during the partition B holds ka = %q and A holds kb = %q: want neither", ga, gb)
		}
		time.Sleep(lag)
	}
	if st := rp.Stats(); st.Held != 2 || st.Pending != 2 || st.Delivered != 0 {
		t.Errorf("during the partition: %+v, want 2 held", st)
	}
	healed := time.Now()
	if err := rp.Heal(a.name, b.name); err != nil {
		t.Fatal(err)
	}
	localtest.Eventually(t, "held changes delivered after the heal", func() (bool, string) {
		ga, gb := get(t, b, "ka"), get(t, a, "kb")
		return ga == "from-a" && gb == "from-b", fmt.Sprintf("B holds ka = %q, A holds kb = %q", ga, gb)
	})
	quiesce(t, rp)
	st := rp.Stats()
	if st.Held != 0 || st.Applied != 2 || st.Lag.Min < healed.Sub(written)+lag-jitter {
		t.Errorf("after the heal: %+v, want 2 applied, each with a lag of at least the partition's %s plus %s",
			st, healed.Sub(written), lag-jitter)
	}
	if err := rp.Heal(a.name, b.name); err != nil {
		t.Errorf("healing again: %v, want nothing to change", err)
	}
	checkBalance(t, st)
}

// A killed region loses exactly the changes it had not delivered: the region cut off
// from it lacks them, the one it could still reach has them, and Stats counts them.
func TestKillLosesUnreplicated(t *testing.T) {
	rs := startRegions(t, 3)
	a, b, c := rs[0], rs[1], rs[2]
	rp := replicate(t, rs, replication.Options{Lag: 5 * time.Millisecond, Jitter: 2 * time.Millisecond, Seed: 5})
	for i := range 5 {
		put(t, a, fmt.Sprint("pre-", i), "v1")
	}
	quiesce(t, rp)
	before := scan(t, a)
	if err := rp.Partition(a.name, b.name); err != nil {
		t.Fatal(err)
	}
	const cut = 7
	for i := range cut {
		put(t, a, fmt.Sprint("post-", i), "v")
	}
	put(t, a, "pre-0", "v2") // an update of an item B holds
	localtest.Eventually(t, "A's changes delivered to C, held for B", func() (bool, string) {
		st := rp.Stats()
		return st.Pending == cut+1 && st.Held == cut+1, fmt.Sprintf("%+v", st)
	})
	if err := rp.Kill(a.name); err != nil {
		t.Fatal(err)
	}
	st := rp.Stats()
	if st.Lost != cut+1 || st.Pending != 0 || st.Held != 0 || st.Dropped != 0 {
		t.Errorf("after the kill: %+v, want %d lost, nothing pending", st, cut+1)
	}
	checkBalance(t, st)
	if d := diff(scan(t, b), before); d != "" {
		t.Errorf("B differs from A's table before the partition:%s", d)
	}
	if d := diff(scan(t, c), scan(t, a)); d != "" {
		t.Errorf("C differs from A (it was never cut off from it):%s", d)
	}

	// A killed region neither receives nor sends.
	put(t, b, "after-b", "v")
	quiesce(t, rp)
	if got, want := get(t, c, "after-b"), "v"; got != want {
		t.Errorf("C holds after-b = %q, want %q", got, want)
	}
	if got := get(t, a, "after-b"); got != "" {
		t.Errorf("the killed region received after-b = %q", got)
	}
	put(t, a, "after-a", "v")
	quiesce(t, rp)
	if gb, gc := get(t, b, "after-a"), get(t, c, "after-a"); gb != "" || gc != "" {
		t.Errorf("a write in the killed region reached B (%q) or C (%q)", gb, gc)
	}
	st = rp.Stats()
	if st.Lost != cut+3 {
		t.Errorf("lost %d, want %d: the killed region's later write, owed to 2 regions, is lost too", st.Lost, cut+3)
	}
	checkBalance(t, st)
	if err := rp.Kill(a.name); !errors.Is(err, replication.ErrKilled) {
		t.Errorf("killing again: %v, want ErrKilled", err)
	}
	if err := rp.Partition(c.name, a.name); !errors.Is(err, replication.ErrKilled) {
		t.Errorf("partitioning a killed region: %v, want ErrKilled", err)
	}
}

// What was on its way to a region when it is killed is dropped, not lost.
func TestKillDropsInbound(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	rp := replicate(t, rs, replication.Options{Lag: time.Hour, Seed: 6})
	put(t, a, "k", "v")
	put(t, b, "j", "v")
	if err := rp.Kill(b.name); err != nil {
		t.Fatal(err)
	}
	st := rp.Stats()
	if st.Dropped != 1 || st.Lost != 1 || st.Pending != 0 {
		t.Errorf("after killing B with one change on its way in and one out: %+v, want 1 dropped, 1 lost", st)
	}
	checkBalance(t, st)
	quiesce(t, rp)
}

// At the default lag, the measured lags come out within the configured spread.
func TestLagAtDefaults(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	rp := replicate(t, rs, replication.Options{Seed: 7})
	const writes = 100
	for i := range writes {
		put(t, a, fmt.Sprint("a-", i), "v")
		put(t, b, fmt.Sprint("b-", i), "v")
	}
	quiesce(t, rp)
	st := rp.Stats()
	l := st.Lag
	t.Logf("lag at defaults over %d deliveries: min %s, p50 %s, p90 %s, p99 %s, max %s", l.Samples, l.Min, l.P50, l.P90, l.P99, l.Max)
	const lag, jitter, slack = 500 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond
	if l.Samples != 2*writes || st.Applied != 2*writes {
		t.Errorf("%+v: want %d deliveries, all applied", st, 2*writes)
	}
	if l.Min < lag-jitter {
		t.Errorf("min lag %s: below the least configured delay %s", l.Min, lag-jitter)
	}
	if l.P50 < lag-jitter || l.P50 > lag+jitter+slack {
		t.Errorf("p50 lag %s: want within [%s, %s]", l.P50, lag-jitter, lag+jitter+slack)
	}
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) || l.Max < lag {
		t.Errorf("lags out of order, or none above the mean delay: %+v", l)
	}
}

// lockedBuffer is a log destination tests read while the replicator writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A change whose table is missing in the destination is retried, reported and logged
// (without the item), and delivered once the table is there.
func TestMissingTableRetried(t *testing.T) {
	rs := startRegions(t, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	if _, err := b.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	rp := replicate(t, rs, replication.Options{Lag: 2 * time.Millisecond, Jitter: time.Millisecond, Seed: 8,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const secret = "attribute-value-never-logged"
	put(t, a, "k", secret)
	localtest.Eventually(t, "the failure reported", func() (bool, string) {
		err, st := rp.Err(), rp.Stats()
		return errors.Is(err, replication.ErrApply) && errors.Is(err, dynamo.ErrNoTable) && st.Failures >= 2 &&
			st.Retrying == 1 && st.Pending == 1, fmt.Sprintf("err %v, stats %+v", err, st)
	})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := rp.Quiesce(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, dynamo.ErrNoTable) {
		t.Errorf("quiesce with a change failing: %v, want the deadline and the cause", err)
	}
	createTable(t, b.db)
	quiesce(t, rp)
	if got := get(t, b, "k"); got != secret {
		t.Errorf("B holds %q once its table exists, want A's write", got)
	}
	if err, st := rp.Err(), rp.Stats(); err != nil || st.Retrying != 0 || st.Applied != 1 {
		t.Errorf("after delivery: err %v, stats %+v: want no error and 1 applied", err, st)
	}
	log := logs.String()
	if !strings.Contains(log, "table missing in the destination") || !strings.Contains(log, "apply again") || strings.Contains(log, secret) {
		t.Errorf("log %q: want the failure and the recovery, never the item", log)
	}
}

// Bad options and arguments are refused with errors naming them; a closed replicator
// does nothing more.
func TestOptionsAndArguments(t *testing.T) {
	rs := startRegions(t, 2)
	replicas := []*dynamo.Replica{rs[0].replica, rs[1].replica}
	for _, tc := range []struct {
		o     replication.Options
		field string
	}{
		{replication.Options{Lag: -time.Second}, "Options.Lag"},
		{replication.Options{Jitter: -1}, "Options.Jitter"},
		{replication.Options{Lag: time.Millisecond, Jitter: 2 * time.Millisecond}, "Options.Jitter"},
		{replication.Options{RetryMin: -1}, "Options.RetryMin"},
		{replication.Options{RetryMin: time.Second, RetryMax: time.Millisecond}, "Options.RetryMin"},
		{replication.Options{LagWindow: -1}, "Options.LagWindow"},
	} {
		_, err := replication.New(replicas, tc.o)
		if !errors.Is(err, replication.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New with %+v: %v, want ErrInvalid naming %s", tc.o, err, tc.field)
		}
	}
	for what, reps := range map[string][]*dynamo.Replica{
		"no replicas": nil, "a nil replica": {replicas[0], nil}, "two of one region": {replicas[0], replicas[0]},
	} {
		if _, err := replication.New(reps, replication.Options{}); !errors.Is(err, replication.ErrInvalid) {
			t.Errorf("New with %s: %v, want ErrInvalid", what, err)
		}
	}

	rp := replicate(t, rs, replication.Options{Lag: time.Millisecond})
	if rp.Seed() == 0 {
		t.Error("Seed is 0: want the seed drawn")
	}
	if got := rp.Regions(); len(got) != 2 || got[0] != rs[0].name || got[1] != rs[1].name {
		t.Errorf("Regions %v", got)
	}
	if err := rp.Partition(rs[0].name, "mars-1"); !errors.Is(err, replication.ErrUnknownRegion) {
		t.Errorf("partition with an unknown region: %v, want ErrUnknownRegion", err)
	}
	if err := rp.Heal(rs[0].name, rs[0].name); !errors.Is(err, replication.ErrInvalid) {
		t.Errorf("heal of a region with itself: %v, want ErrInvalid", err)
	}
	if err := rp.Kill("mars-1"); !errors.Is(err, replication.ErrUnknownRegion) {
		t.Errorf("kill of an unknown region: %v, want ErrUnknownRegion", err)
	}
	rp.Close()
	rp.Close()
	put(t, rs[0], "k", "after close")
	if st := rp.Stats(); st.Deliveries != 0 {
		t.Errorf("a write after Close was queued: %+v", st)
	}
	if err := rp.Quiesce(context.Background()); !errors.Is(err, replication.ErrClosed) {
		t.Errorf("quiesce after Close: %v, want ErrClosed", err)
	}
	if err := rp.Partition(rs[0].name, rs[1].name); !errors.Is(err, replication.ErrClosed) {
		t.Errorf("partition after Close: %v, want ErrClosed", err)
	}
	if err := rp.Kill(rs[0].name); !errors.Is(err, replication.ErrClosed) {
		t.Errorf("kill after Close: %v, want ErrClosed", err)
	}
}
