package bench

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/internal/tablespec"
	"github.com/sessionha/sessionha/local/edge"
)

// What each user action costs on AWS: the calls it makes, counted at the edge by service
// and operation (local/edge OpStats), and the functions' invocations and billed duration
// (the Lambda runner), priced at AWS's on-demand prices in prices.json.

//go:embed prices.json
var pricesJSON []byte

type priceTable struct {
	Checked, Region, Currency, Note string
	Sources                         map[string]string
	Prices                          struct {
		SNSPublish  float64 `json:"snsPublishPerMillion"`
		SNSDelivery float64 `json:"snsDeliveryToSQSPerMillion"`
		SQSRequest  float64 `json:"sqsRequestPerMillion"`
		LambdaReq   float64 `json:"lambdaRequestPerMillion"`
		LambdaGBs   float64 `json:"lambdaArmGBSecond"`
		DynamoDBWRU float64 `json:"dynamodbWriteRequestUnitPerMillion"`
		DynamoDBRRU float64 `json:"dynamodbReadRequestUnitPerMillion"`
	}
}

func loadPrices() (priceTable, error) {
	var p priceTable
	if err := json.Unmarshal(pricesJSON, &p); err != nil {
		return p, fmt.Errorf("prices.json: %v", err)
	}
	if p.Checked == "" || p.Prices.SNSPublish <= 0 || p.Prices.SQSRequest <= 0 || p.Prices.DynamoDBWRU <= 0 || p.Prices.LambdaGBs <= 0 {
		return p, errors.New("prices.json: a date (checked) and every price are required")
	}
	return p, nil
}

// lambdaMemoryMB is what the functions are deployed with: infra/config.go's default
// (MemoryMB 256).
const lambdaMemoryMB = 256

// usage is what k actions made AWS do.
type usage struct {
	Actions     int
	Ops         map[string]edge.OpCount // by "service Operation", empty receives taken out
	EmptyPolls  int64                   // empty receives meanwhile: long polls, not the actions'
	Invocations map[string]int64        // by function
	Billed      map[string]time.Duration
}

// fnStats snapshots the functions' invocations and billed time.
func fnStats() (map[string]int64, map[string]time.Duration) {
	inv, billed := map[string]int64{}, map[string]time.Duration{}
	for id, f := range theSite.Functions {
		st := f.Stats()
		inv[id], billed[id] = st.Invocations, st.Billed
	}
	return inv, billed
}

// busyCalls is the edge's count of calls so far, empty receives aside.
func busyCalls() int64 {
	var n int64
	for op, c := range theSite.Edge.OpStats() {
		n += c.Calls
		if op == "sqs ReceiveMessage" {
			n -= c.Empty
		}
	}
	return n
}

// settle waits until the edge has seen no call but empty receives for quiet: what the
// actions set off (the functions, notices to other instances) is done.
func (b *bencher) settle(quiet time.Duration) {
	last, since := busyCalls(), time.Now()
	deadline := time.Now().Add(time.Minute)
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			b.t.Fatal("the edge did not quieten within a minute")
		}
		time.Sleep(20 * time.Millisecond)
		if n := busyCalls(); n != last {
			last, since = n, time.Now()
		}
	}
}

// usageOf runs act k times by conc goroutines and returns what AWS did for them, until
// it quietened.
func (b *bencher) usageOf(k, conc int, act func(i int) error) usage {
	b.settle(300 * time.Millisecond)
	ops0 := theSite.Edge.OpStats()
	inv0, billed0 := fnStats()
	b.measure(conc, k, act)
	b.settle(500 * time.Millisecond)
	u := usage{Actions: k, Ops: map[string]edge.OpCount{}, Invocations: map[string]int64{}, Billed: map[string]time.Duration{}}
	for op, c := range theSite.Edge.OpStats() {
		o := ops0[op]
		d := edge.OpCount{Calls: c.Calls - o.Calls, Chunks: c.Chunks - o.Chunks, Empty: c.Empty - o.Empty}
		if op == "sqs ReceiveMessage" {
			u.EmptyPolls = d.Empty
			d.Calls -= d.Empty
			d.Chunks -= d.Empty
		}
		if d.Calls > 0 {
			u.Ops[op] = d
		}
	}
	inv, billed := fnStats()
	for id := range inv {
		if n := inv[id] - inv0[id]; n > 0 {
			u.Invocations[id], u.Billed[id] = n, billed[id]-billed0[id]
		}
	}
	return u
}

// calls is how many calls of op an action made, on average.
func (u usage) calls(op string) float64 { return float64(u.Ops[op].Calls) / float64(u.Actions) }

// describe lists the calls per action, e.g. "SNS Publish 1, DynamoDB GetItem 1".
func (u usage) describe() string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(u.Ops)) {
		svc, name, _ := strings.Cut(op, " ")
		if n, ok := serviceNames[svc]; ok {
			svc = n
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", svc, name, num(u.calls(op))))
	}
	for _, id := range slices.Sorted(maps.Keys(u.Invocations)) {
		parts = append(parts, fmt.Sprintf("Lambda %s %s invocations, %s ms billed", id,
			num(float64(u.Invocations[id])/float64(u.Actions)), num(float64(u.Billed[id].Milliseconds())/float64(u.Actions))))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

var serviceNames = map[string]string{"dynamodb": "DynamoDB", "sns": "SNS", "sqs": "SQS"}

func num(x float64) string {
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// dollars is what the actions cost per million of them, by service, at prices p, for
// items of the sizes measured (sz): a strongly consistent read of the item is
// ceil(item/4 KB) RRU, and sessionha's reads are BatchGetItems of the item and its
// logout item (record.Table.Read), each key billed as a read of its own: the item's
// RRU plus one for the logout item (a few hundred bytes, or none: a read that finds
// nothing costs one RRU too); a write of it ceil(item/1 KB) WRU (a delete or a
// tombstone, the item before it), plus ceil(index entry/1 KB) WRU for the per-user index
// entry it changes (a logout item is written at this price too, which overstates it).
func (u usage) dollars(p priceTable, sz sizeResult) (total float64, by map[string]float64) {
	per := 1e6 / float64(u.Actions) // actions to a million
	rru := math.Ceil(float64(sz.Item) / 4096)
	wru := math.Ceil(float64(sz.Item)/1024) + math.Ceil(float64(sz.Index)/1024)
	by = map[string]float64{}
	for op, c := range u.Ops {
		svc, name, _ := strings.Cut(op, " ")
		switch svc {
		case "sns":
			if name == "Publish" || name == "PublishBatch" {
				by["SNS"] += float64(c.Chunks) * p.Prices.SNSPublish / 1e6 * per
			}
		case "sqs":
			by["SQS"] += float64(c.Chunks) * p.Prices.SQSRequest / 1e6 * per
		case "dynamodb":
			switch name {
			case "GetItem":
				by["DynamoDB"] += float64(c.Calls) * rru * p.Prices.DynamoDBRRU / 1e6 * per
			case "BatchGetItem":
				by["DynamoDB"] += float64(c.Calls) * (rru + 1) * p.Prices.DynamoDBRRU / 1e6 * per
			case "PutItem", "DeleteItem":
				by["DynamoDB"] += float64(c.Calls) * wru * p.Prices.DynamoDBWRU / 1e6 * per
			}
		}
	}
	for id, n := range u.Invocations {
		gbs := u.Billed[id].Seconds() * lambdaMemoryMB / 1024
		by["Lambda"] += (float64(n)*p.Prices.LambdaReq/1e6 + gbs*p.Prices.LambdaGBs) * per
	}
	for _, v := range by {
		total += v
	}
	return total, by
}

// directStore is the comparison: a session store that reads and writes DynamoDB
// directly on every request, as a store without an owner's memory does (a bench-only
// sketch of scs's dynamodbstore): Create and Save put the item (the layout sessionha
// stores, per-user index entry included), Load reads it with a strongly consistent
// GetItem, Destroy deletes it. It has a table of its own, of the session table's layout
// (key, TTL, per-user index): in the session table its writes would reach the lifecycle
// function through the table's stream, which a direct store does not pay for.
type directStore struct {
	b     *bencher
	table string
}

// newDirectStore makes the direct store's table.
func newDirectStore(b *bencher) directStore {
	t := theSite.Topology.Table
	spec := tablespec.Spec{Name: t.Name + "-direct", PartitionKey: t.PartitionKey, TTLAttribute: t.TTLAttribute}
	for _, ix := range t.Indexes {
		spec.Indexes = append(spec.Indexes, tablespec.Index{Name: ix.Name, PartitionKey: ix.PartitionKey, SortKey: ix.SortKey, Include: ix.Include})
	}
	if _, err := tablespec.Ensure(b.ctx, b.db, spec); err != nil {
		b.t.Fatalf("the direct store's table: %v", err)
	}
	return directStore{b: b, table: spec.Name}
}

func (d directStore) key(id string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: record.Key("direct", events.HashID(id))}}
}

func (d directStore) put(id string, attrs map[string][]byte) error {
	now := time.Now().UnixMilli()
	ver := record.Version(fmt.Sprintf("%016x", uint64(now)<<16), "direct")
	_, err := d.b.db.PutItem(d.b.ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: record.Marshal(&record.Item{
		Key: record.Key("direct", events.HashID(id)), Rev: 1, Version: ver, State: record.Active, Principal: "direct",
		Created: now, LastAccess: now, MaxIdle: 1800, MaxLife: 28800, Site: "local", Writer: "direct", Attrs: attrs,
		Floor: ver, ExpiresAt: now/1000 + 1800,
	})})
	return err
}

func (d directStore) load(id string) error {
	out, err := d.b.db.GetItem(d.b.ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: d.key(id), ConsistentRead: aws.Bool(true)})
	if err == nil && len(out.Item) == 0 {
		err = errors.New("direct store: session not found")
	}
	if err == nil {
		_, err = record.Unmarshal(out.Item)
	}
	return err
}

func (d directStore) destroy(id string) error {
	_, err := d.b.db.DeleteItem(d.b.ctx, &dynamodb.DeleteItemInput{TableName: aws.String(d.table), Key: d.key(id)})
	return err
}

// action is one user action's usage by sessionha and by the direct store.
type action struct {
	Name, Why         string
	Sessionha, Direct usage
	HaveDirect        bool
}

// costs measures each action k times, on sessions of their own.
func (b *bencher) costs(k int) []action {
	const conc = 4
	ctx := b.ctx
	a, bb := b.writer, b.reader
	sess := make([]*client.Session, k)
	ids := make([]string, k)
	var acts []action
	add := func(name, why string, ha func(i int) error, direct func(i int) error) {
		x := action{Name: name, Why: why, Sessionha: b.usageOf(k, conc, ha)}
		if direct != nil {
			x.Direct, x.HaveDirect = b.usageOf(k, conc, direct), true
		}
		b.t.Logf("cost of %s: sessionha %s; direct store %s", name, x.Sessionha.describe(), x.Direct.describe())
		acts = append(acts, x)
	}
	d := newDirectStore(b)
	dids := make([]string, k)
	for i := range dids {
		dids[i] = fmt.Sprintf("direct-%d-%d", time.Now().UnixNano(), i)
	}
	add("login (Create)", "sessionha publishes once; the function puts the item (no read: a create is put on the condition that nothing is stored)",
		func(i int) error {
			s, err := a.Create(ctx, client.NewSession{Principal: fmt.Sprintf("cost%03d", i), Attrs: refAttributes()})
			sess[i], ids[i] = s, s.ID()
			return err
		},
		func(i int) error { return d.put(dids[i], refAttributes()) })
	add("request on an owned session (Load)", "served from the owner's memory: no call",
		func(i int) error { _, err := a.Load(ctx, ids[i]); return err },
		func(i int) error { return d.load(dids[i]) })
	add("request after failover (Load on another instance)", "a strongly consistent BatchGetItem of the item and its logout item (two reads: the logout item makes a logout in any region final), where the direct store's every request is one GetItem",
		func(i int) error { _, err := bb.Load(ctx, ids[i]); return err },
		func(i int) error { return d.load(dids[i]) })
	add("save on the owner (Save, publish only)", "sessionha: publish, then the function reads and conditionally puts the item (read-merge-put); the direct store puts it",
		func(i int) error { sess[i].Set("attr01", []byte(fmt.Sprint("s", i))); return a.Save(ctx, sess[i]) },
		func(i int) error { return d.put(dids[i], refAttributes()) })
	add("save that waits until applied (SaveApplied)", "the save's calls, and the consistent reads of the wait until the item has the change",
		func(i int) error {
			sess[i].Set("attr01", []byte(fmt.Sprint("a", i)))
			return a.SaveApplied(ctx, sess[i])
		}, nil)
	onB := make([]*client.Session, k)
	for i, id := range ids {
		s, err := bb.Load(ctx, id)
		if err != nil {
			b.t.Fatal(err)
		}
		onB[i] = s
	}
	add("save after failover (the takeover's first Save)", "the save's calls, and the superseded notice the function publishes to the old owner, who receives and deletes it",
		func(i int) error { onB[i].Set("attr01", []byte(fmt.Sprint("b", i))); return bb.Save(ctx, onB[i]) }, nil)
	add("logout (Destroy)", "sessionha: the tombstone op and the destroy notice, the function's read-merge-put, and each instance's receive of the notice; the direct store deletes the item",
		func(i int) error { return bb.Destroy(ctx, ids[i]) },
		func(i int) error { return d.destroy(dids[i]) })
	return acts
}
