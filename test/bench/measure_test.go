package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/lambdarunner"
)

// The reference session of DESIGN.md: 20 attributes, 2 KB of values.
const (
	refAttrs      = 20
	refValueBytes = 2048
)

func refAttributes() map[string][]byte {
	m := make(map[string][]byte, refAttrs)
	left := refValueBytes
	for i := range refAttrs {
		size := left / (refAttrs - i)
		v := make([]byte, size)
		_, _ = rand.Read(v)
		m[fmt.Sprintf("attr%02d", i+1)] = v
		left -= size
	}
	return m
}

type bencher struct {
	t      *testing.T
	ctx    context.Context
	db     *dynamodb.Client
	table  string
	writer *client.Store // instance A: creates
	reader *client.Store // instance B: fails over
	ids    []string      // sessions made by the pipeline run, for the reads
	bus    *busRig       // the bus alone's topic and queue, made on first use
}

func newBencher(t *testing.T) *bencher {
	b := &bencher{t: t, ctx: context.Background(), db: theSite.DynamoDBClient(), table: theSite.Outputs.Table}
	b.writer, b.reader = b.open("bench-a"), b.open("bench-b")
	return b
}

func (b *bencher) open(name string) *client.Store {
	s, err := client.Open(b.ctx, client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		NoticeTopicARN: theSite.Outputs.TopicARNs[topology.TopicNotice], InstanceID: name,
		AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), MaxSessions: 100000, JournalDir: b.t.TempDir(),
	})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = s.Close() })
	return s
}

// latencies are one run's per-operation durations.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// run is a measured run: n operations by conc goroutines.
type run struct {
	N, Conc int
	Elapsed time.Duration
	Lat     latencies
}

func (r run) perSecond() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// measure calls op(i) for i in [0, n) from conc goroutines and times each call.
func (b *bencher) measure(conc, n int, op func(i int) error) run {
	lat := make(latencies, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		b.t.Fatal(err)
	}
	return run{N: n, Conc: conc, Elapsed: elapsed, Lat: lat}
}

// rawItem is the reference session as the function stores it, under a key of its own.
func rawItem() map[string]ddbtypes.AttributeValue {
	now := time.Now().UnixMilli()
	var k [32]byte
	_, _ = rand.Read(k[:])
	ver := record.Version(fmt.Sprintf("%016x", uint64(now)<<16), "bench-raw")
	return record.Marshal(&record.Item{
		Key: record.Key("bench-raw", base64.RawURLEncoding.EncodeToString(k[:])), Rev: 1, Version: ver,
		State: record.Active, Principal: "bench", Created: now, LastAccess: now, MaxIdle: 1800, MaxLife: 28800,
		Site: "local", Writer: "bench-raw", Attrs: refAttributes(), Floor: ver, ExpiresAt: now/1000 + 1800,
	})
}

var rawKeys struct {
	sync.Mutex
	keys []map[string]ddbtypes.AttributeValue
}

// rawPut puts n reference items with conc goroutines, straight to DynamoDB Local through
// the edge: the baseline of the pipeline's throughput and of the visibility lag.
func (b *bencher) rawPut(conc, n int) run {
	items := make([]map[string]ddbtypes.AttributeValue, n)
	for i := range items {
		items[i] = rawItem()
	}
	r := b.measure(conc, n, func(i int) error {
		_, err := b.db.PutItem(b.ctx, &dynamodb.PutItemInput{TableName: aws.String(b.table), Item: items[i]})
		return err
	})
	rawKeys.Lock()
	for _, it := range items {
		rawKeys.keys = append(rawKeys.keys, map[string]ddbtypes.AttributeValue{"pk": it["pk"]})
	}
	rawKeys.Unlock()
	b.t.Logf("raw PutItem, %d by %d: %.0f/s, p50 %s p99 %s", n, conc, r.perSecond(), r.Lat.pct(50), r.Lat.pct(99))
	return r
}

// rawGet reads reference items back with consistent GetItem: the direct read's baseline.
func (b *bencher) rawGet(conc, n int) run {
	rawKeys.Lock()
	keys := slices.Clone(rawKeys.keys)
	rawKeys.Unlock()
	r := b.measure(conc, n, func(i int) error {
		out, err := b.db.GetItem(b.ctx, &dynamodb.GetItemInput{TableName: aws.String(b.table), Key: keys[i%len(keys)], ConsistentRead: aws.Bool(true)})
		if err == nil && len(out.Item) == 0 {
			err = errors.New("raw GetItem found nothing")
		}
		return err
	})
	b.t.Logf("raw GetItem, %d by %d: p50 %s p99 %s", n, conc, r.Lat.pct(50), r.Lat.pct(99))
	return r
}

// handled is how many ops sessionop has applied or found applied already. An op counts
// as Unchanged when a delivery finds its own write done: a batch redelivered after its
// environment timed out, or a write the SDK retried after its answer was lost.
func (b *bencher) handled() float64 {
	op := theSite.Metrics.Snapshot().Functions["sessionop"]
	return op["Applied"] + op["Unchanged"]
}

// waitApplied waits until sessionop has handled want more ops than at base and, if ids
// are given, until every one of those sessions is in the table.
func (b *bencher) waitApplied(base, want float64, ids []string) {
	deadline := time.Now().Add(3 * time.Minute)
	for b.handled() < base+want {
		if time.Now().After(deadline) {
			b.t.Fatalf("only %.0f of %.0f ops handled within 3 minutes", b.handled()-base, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for len(ids) > 0 {
		missing := b.missing(ids)
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%d of %d sessions not in the table within 3 minutes", len(missing), len(ids))
		}
		ids = missing
		time.Sleep(10 * time.Millisecond)
	}
}

// missing returns the ids whose sessions are not in the table (consistent reads).
func (b *bencher) missing(ids []string) []string {
	var out []string
	for i := 0; i < len(ids); i += 100 {
		batch := ids[i:min(i+100, len(ids))]
		keys := make([]map[string]ddbtypes.AttributeValue, 0, len(batch))
		byKey := map[string]string{}
		for _, id := range batch {
			k := record.Key("default", events.HashID(id))
			byKey[k] = id
			keys = append(keys, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: k}})
		}
		in := &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{b.table: {Keys: keys, ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("pk")}}}
		for len(in.RequestItems) > 0 {
			res, err := b.db.BatchGetItem(b.ctx, in)
			if err != nil {
				b.t.Fatal(err)
			}
			for _, it := range res.Responses[b.table] {
				delete(byKey, it["pk"].(*ddbtypes.AttributeValueMemberS).Value)
			}
			in.RequestItems = res.UnprocessedKeys
		}
		for _, id := range byKey {
			out = append(out, id)
		}
	}
	return out
}

// warmUp starts the functions' environments and warms the emulators (the JIT of
// DynamoDB Local above all), so that no run pays for the first requests.
func (b *bencher) warmUp() {
	const n = 1500 // DynamoDB Local's JIT keeps improving for the first few thousand calls
	base := b.handled()
	ids := make([]string, n)
	b.measure(*conc, n, func(i int) error {
		s, err := b.writer.Create(b.ctx, client.NewSession{Principal: "warm", Attrs: refAttributes()})
		if err == nil {
			ids[i] = s.ID()
		}
		return err
	})
	b.rawPut(*conc, n)
	b.rawGet(*latConc, n)
	b.waitApplied(base, n, ids)
}

// cpuUse is CPU time per component during a run.
type cpuUse struct {
	Wall   time.Duration
	Parts  []cpuPart
	Others time.Duration // what other processes of the machine used meanwhile
}

type cpuPart struct {
	Name string
	CPU  time.Duration
}

// pipeline creates n reference sessions with conc goroutines on one client instance and
// times until the functions have applied them all.
func (b *bencher) pipeline(conc, n int) (run, cpuUse, batches) {
	base := b.handled()
	cpu0 := b.cpuStart()
	fn := theSite.Functions[topology.FunctionSessionOp]
	inv0 := fn.Stats().Invocations
	ids := make([]string, n)
	start := time.Now()
	r := b.measure(conc, n, func(i int) error {
		s, err := b.writer.Create(b.ctx, client.NewSession{Principal: fmt.Sprintf("user%04d", i%1000), Attrs: refAttributes()})
		if err == nil {
			ids[i] = s.ID()
		}
		return err
	})
	published := time.Since(start)
	b.waitApplied(base, float64(n), ids) // every one is in the table
	r.Elapsed = time.Since(start)
	use := b.cpuSince(cpu0, r.Elapsed, *cpuProf)
	bt := batches{Messages: n, Invocations: int(fn.Stats().Invocations - inv0)}
	b.ids = ids
	b.t.Logf("pipeline, %d by %d: published in %s, applied in %s: %.0f/s", n, conc, published.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), r.perSecond())
	return r, use, bt
}

// batches says how the runner batched the pipeline run's messages.
type batches struct{ Messages, Invocations int }

// interleaved runs n samples from conc goroutines; a sample calls each op in turn
// (starting with a different one each sample) and times each, so that the runs it compares
// meet the same load, which on a shared machine comes and goes. ops[k] is skipped on
// samples i where i%every[k] != 0.
func (b *bencher) interleaved(conc, n int, every []int, ops ...func(i int) error) []run {
	lat := make([]latencies, len(ops))
	for k := range ops {
		lat[k] = make(latencies, 0, n/every[k]+1)
	}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for j := range ops {
					k := (i + j) % len(ops)
					if i%every[k] != 0 {
						continue
					}
					t0 := time.Now()
					if err := ops[k](i); err != nil {
						errs <- err
						return
					}
					d := time.Since(t0)
					mu.Lock()
					lat[k] = append(lat[k], d)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.t.Fatal(err)
	}
	runs := make([]run, len(ops))
	for k := range ops {
		runs[k] = run{N: len(lat[k]), Conc: conc, Lat: lat[k]}
	}
	return runs
}

// busResult is the bus read.
type busResult struct {
	Run      run
	Timeouts int // reads that got no answer within MaxWait (5 s)
}

// reads measures, interleaved: a consistent GetItem of a raw reference item (the
// baseline), the direct failover read (Load on instance B, which never held the session),
// and, every third sample, the bus failover read (Load on instance C with ReadPath bus:
// a query on the query topic, sessionquery's answer on the reply topic, routed to C's own
// queue).
func (b *bencher) reads(conc, n int) (raw, rawPair, direct run, bus busResult) {
	rawKeys.Lock()
	keys := slices.Clone(rawKeys.keys)
	rawKeys.Unlock()
	c, err := client.Open(b.ctx, client.Config{
		Table: b.table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps], InstanceID: "bench-c",
		ReadPath: client.ReadBus, AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), MaxSessions: 100000, JournalDir: b.t.TempDir(),
		QueryTopicARN: theSite.Outputs.TopicARNs[topology.TopicQuery], ReplyTopicARN: theSite.Outputs.TopicARNs[topology.TopicReply],
	})
	if err != nil {
		b.t.Fatalf("open a store with ReadPath bus: %v", err)
	}
	defer c.Close()
	var timeouts atomic.Int64
	runs := b.interleaved(conc, n, []int{1, 1, 3, 1},
		func(i int) error {
			out, err := b.db.GetItem(b.ctx, &dynamodb.GetItemInput{TableName: aws.String(b.table), Key: keys[i%len(keys)], ConsistentRead: aws.Bool(true)})
			if err == nil && len(out.Item) == 0 {
				err = errors.New("raw GetItem found nothing")
			}
			return err
		},
		func(i int) error {
			_, err := b.reader.Load(b.ctx, b.ids[i%len(b.ids)])
			return err
		},
		func(i int) error {
			_, err := c.Load(b.ctx, b.ids[(i+n/2)%len(b.ids)])
			if errors.Is(err, client.ErrTimeout) {
				timeouts.Add(1) // counted, and its wait (MaxWait) is in the distribution
				return nil
			}
			return err
		},
		func(i int) error {
			// What a direct Load asks of the table: the item and its logout item's key, in
			// one consistent BatchGetItem (the logout item absent, as for a live session).
			k := keys[i%len(keys)]
			pair := []map[string]ddbtypes.AttributeValue{k, {"pk": &ddbtypes.AttributeValueMemberS{
				Value: record.LogoutKey(k["pk"].(*ddbtypes.AttributeValueMemberS).Value)}}}
			out, err := b.db.BatchGetItem(b.ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{
				b.table: {Keys: pair, ConsistentRead: aws.Bool(true)}}})
			if err == nil && len(out.Responses[b.table]) != 1 {
				err = fmt.Errorf("raw BatchGetItem of an item and its logout key found %d items, want 1", len(out.Responses[b.table]))
			}
			return err
		})
	raw, direct, bus, rawPair = runs[0], runs[1], busResult{Run: runs[2], Timeouts: int(timeouts.Load())}, runs[3]
	b.t.Logf("raw GetItem p50 %s p99 %s; raw BatchGetItem of two keys p50 %s p99 %s; direct failover read p50 %s p99 %s; bus failover read p50 %s p99 %s (%d timeouts); %d samples by %d",
		raw.Lat.pct(50), raw.Lat.pct(99), rawPair.Lat.pct(50), rawPair.Lat.pct(99), direct.Lat.pct(50), direct.Lat.pct(99), bus.Run.Lat.pct(50), bus.Run.Lat.pct(99), bus.Timeouts, n, conc)
	return raw, rawPair, direct, bus
}

// lag measures publish -> readable by another instance, interleaved with raw PutItems (the
// baseline): instance A creates a session (web-method: Create returns once it is
// published) while instance B polls for it.
func (b *bencher) lag(conc, n int) (lag, publish, rawPut run) {
	items := make([]map[string]ddbtypes.AttributeValue, n)
	for i := range items {
		items[i] = rawItem()
	}
	pub := make(latencies, n)
	runs := b.interleaved(conc, n, []int{1, 1},
		func(i int) error {
			_, err := b.db.PutItem(b.ctx, &dynamodb.PutItemInput{TableName: aws.String(b.table), Item: items[i]})
			return err
		},
		func(i int) error {
			t0 := time.Now()
			s, err := b.writer.Create(b.ctx, client.NewSession{Principal: "lag", Attrs: refAttributes()})
			if err != nil {
				return err
			}
			pub[i] = time.Since(t0)
			// Longer than the queue's visibility timeout (60 s), so that a redelivery shows
			// in the tail rather than failing the run.
			deadline := time.Now().Add(90 * time.Second)
			for {
				_, err := b.reader.Load(b.ctx, s.ID())
				if err == nil {
					return nil
				}
				if !errors.Is(err, client.ErrNotFound) || time.Now().After(deadline) {
					return fmt.Errorf("visibility: B's Load: %w (sessionop counters %v)", err, theSite.Metrics.Snapshot().Functions["sessionop"])
				}
			}
		})
	rawPut, lag = runs[0], runs[1]
	publish = run{N: n, Conc: conc, Lat: pub}
	b.t.Logf("visibility lag p50 %s p99 %s (the publish: p50 %s p99 %s); raw PutItem p50 %s p99 %s; %d by %d",
		lag.Lat.pct(50), lag.Lat.pct(99), pub.pct(50), pub.pct(99), rawPut.Lat.pct(50), rawPut.Lat.pct(99), n, conc)
	return lag, publish, rawPut
}

// sizeResult is the stored reference session's size by DynamoDB's rules.
type sizeResult struct {
	Item      int // what counts against the 400 KB limit and capacity units
	Attrs     int // of which the session's attributes (the "a" map)
	Index     int // the byPrincipal index's copy (keys and projected attributes)
	Storage   int // billed storage: item + index copy + 100 bytes of overhead each
	Breakdown []sizePart
}

type sizePart struct {
	Name  string
	Bytes int
}

// bytes stores one reference session and sizes its item as DynamoDB documents it.
func (b *bencher) bytes() sizeResult {
	s, err := b.writer.Create(b.ctx, client.NewSession{Principal: "alice@example.com", Attrs: refAttributes()})
	if err != nil {
		b.t.Fatal(err)
	}
	var item map[string]ddbtypes.AttributeValue
	deadline := time.Now().Add(30 * time.Second)
	for len(item) == 0 {
		out, err := b.db.GetItem(b.ctx, &dynamodb.GetItemInput{TableName: aws.String(b.table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: record.Key("default", events.HashID(s.ID()))}}})
		if err != nil || time.Now().After(deadline) {
			b.t.Fatalf("reference session not stored: %v", err)
		}
		item = out.Item
	}
	var res sizeResult
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range item {
			if !yield(k) {
				return
			}
		}
	}) {
		n := len(name) + record.ValueSize(item[name])
		res.Item += n
		res.Breakdown = append(res.Breakdown, sizePart{name, n})
		if name == "a" {
			res.Attrs = n
		}
	}
	// The index's copy: its keys, the table's key, and the projected attributes.
	topo := theSite.Topology
	ix := topo.Table.Indexes[0]
	for _, name := range append([]string{ix.PartitionKey, ix.SortKey, topo.Table.PartitionKey}, ix.Include...) {
		if v, ok := item[name]; ok {
			res.Index += len(name) + record.ValueSize(v)
		}
	}
	res.Storage = res.Item + 100 + res.Index + 100
	b.t.Logf("reference session: item %d bytes (attributes %d), index copy %d, storage %d", res.Item, res.Attrs, res.Index, res.Storage)
	return res
}

// coldResult is the function's cold start: process start to first event handled.
type coldResult struct {
	Total latencies // Invoke's wall time on a fresh environment: spawn, init, the event
	Init  latencies // the runner's InitLast: process start to the runtime's first GET /next
	Warm  latencies // the same event on a warm environment, for comparison
	Flags string
}

// coldStarts builds sessionop as it is deployed (static, stripped, no RPC) for this
// machine and invokes it with one SQS record on a fresh environment, k times.
func (b *bencher) coldStarts(k int) coldResult {
	dir := b.t.TempDir()
	const flags = "CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags='-s -w'"
	boot := filepath.Join(dir, "bootstrap")
	build(b.t, "", boot, "./functions/"+topology.FunctionSessionOp)
	r := lambdarunner.New(lambdarunner.Config{Logger: slog.New(slog.DiscardHandler)})
	defer r.Stop()
	// The deployed function's environment (its queue, DLQ, notice topic, retry schedule),
	// as the site gives it to the runner.
	f, _ := theSite.Topology.Function(topology.FunctionSessionOp)
	env := theSite.FunctionEnv(f)
	fn, err := r.Start(b.ctx, lambdarunner.Function{
		Name: "bench-cold-sessionop", Bootstrap: boot, Timeout: 10 * time.Second, Env: env,
	})
	if err != nil {
		b.t.Fatal(err)
	}
	event := func() []byte {
		now := time.Now().UnixMilli()
		var id [32]byte
		_, _ = rand.Read(id[:])
		body, _ := events.EncodeSessionOp(&events.SessionOp{V: events.SchemaVersion, Op: events.OpCreate, Cluster: "bench-cold",
			ID: events.HashID(hex.EncodeToString(id[:])), Version: fmt.Sprintf("%016x", uint64(now)<<16), Writer: "bench", Site: "local", At: now,
			Session: &events.Session{Principal: "cold", Created: now, LastAccess: now, MaxIdle: 60, MaxLife: 60, Attrs: refAttributes()}})
		ev, _ := json.Marshal(lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "m1", Body: string(body), EventSource: "aws:sqs"}}})
		return ev
	}
	var res coldResult
	res.Flags = flags
	for range k {
		t0 := time.Now()
		out, err := fn.Invoke(b.ctx, event())
		if err != nil || strings.Contains(string(out), "itemIdentifier") {
			b.t.Fatalf("cold invoke: %s %v", out, err)
		}
		res.Total = append(res.Total, time.Since(t0))
		res.Init = append(res.Init, fn.Stats().InitLast)
		t1 := time.Now()
		if _, err := fn.Invoke(b.ctx, event()); err != nil {
			b.t.Fatal(err)
		}
		res.Warm = append(res.Warm, time.Since(t1))
		for _, pid := range fn.Environments() {
			if err := fn.KillEnvironment(pid); err != nil {
				b.t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(fn.Environments()) > 0 {
			if time.Now().After(deadline) {
				b.t.Fatal("a killed environment did not go away")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.t.Logf("cold start: median %s (init %s), warm %s", res.Total.pct(50), res.Init.pct(50), res.Warm.pct(50))
	return res
}

// moduleRoot is two levels up from test/bench.
func moduleRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(filepath.Dir(wd))
}

// build builds a function as it is deployed; goarch "" means this machine's.
func build(t *testing.T, goarch, out, pkg string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, msg)
	}
}

type sizeOf struct {
	Function string
	Bytes    int64
}

// bootstrapSizes builds each function for Lambda (arm64) and reports its size.
func (b *bencher) bootstrapSizes() []sizeOf {
	var out []sizeOf
	for _, f := range theSite.Topology.Functions {
		p := filepath.Join(b.t.TempDir(), "bootstrap")
		build(b.t, "arm64", p, "./functions/"+f.ID)
		st, err := os.Stat(p)
		if err != nil {
			b.t.Fatal(err)
		}
		out = append(out, sizeOf{f.ID, st.Size()})
	}
	return out
}
