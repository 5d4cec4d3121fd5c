package replication_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/replication"
)

// table is the table every test replicates: keyed like the session table, TTL on exp.
const table = "sessions"

// region is one region of a test: its replica, an SDK client for it, and a record of
// the changes it made itself (its change feed, replicated changes left out).
type region struct {
	name    string
	replica *dynamo.Replica
	db      *dynamodb.Client

	mu  sync.Mutex
	own []dynamo.Change
}

func (r *region) changes() []dynamo.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.own)
}

var regionNames = []string{"eu-west-1", "us-east-1", "ap-south-1"}

// startRegions runs n replicas, each on its own 127.0.0.1 port, with the table created
// and TTL on, stopped when the test ends.
func startRegions(t testing.TB, n int) []*region {
	t.Helper()
	var rs []*region
	for _, name := range regionNames[:n] {
		r := &region{name: name, replica: dynamo.New(dynamo.Options{Region: name, TTLPeriod: time.Hour})}
		srv, err := r.replica.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(); r.replica.Close() })
		r.db = dynamodb.New(dynamodb.Options{Region: name, BaseEndpoint: aws.String(srv.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
		cancel := r.replica.Subscribe(func(c dynamo.Change) {
			if c.Cause != dynamo.CauseReplication {
				r.mu.Lock()
				r.own = append(r.own, c)
				r.mu.Unlock()
			}
		})
		t.Cleanup(cancel)
		createTable(t, r.db)
		rs = append(rs, r)
	}
	return rs
}

func createTable(t testing.TB, db *dynamodb.Client) {
	t.Helper()
	ctx := context.Background()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("exp"), Enabled: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
}

// replicate starts a replicator over the regions, closed when the test ends.
func replicate(t testing.TB, rs []*region, o replication.Options) *replication.Replicator {
	t.Helper()
	var replicas []*dynamo.Replica
	for _, r := range rs {
		replicas = append(replicas, r.replica)
	}
	rp, err := replication.New(replicas, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rp.Close)
	return rp
}

func quiesce(t testing.TB, rp *replication.Replicator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rp.Quiesce(ctx); err != nil {
		t.Fatalf("quiesce: %v", err)
	}
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
func key(k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": s(k)}
}

func put(t testing.TB, r *region, k, v string) {
	t.Helper()
	_, err := r.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table),
		Item: map[string]types.AttributeValue{"pk": s(k), "v": s(v)}})
	if err != nil {
		t.Fatalf("put %s in %s: %v", k, r.name, err)
	}
}

// get reads an item's v in a region: "" if there is no item.
func get(t testing.TB, r *region, k string) string {
	t.Helper()
	out, err := r.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), Key: key(k), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("get %s in %s: %v", k, r.name, err)
	}
	if out.Item == nil {
		return ""
	}
	v, _ := out.Item["v"].(*types.AttributeValueMemberS)
	if v == nil {
		return "<no v>"
	}
	return v.Value
}

// scan returns a region's whole table, by key ("pk" value).
func scan(t testing.TB, r *region) map[string]dynamo.Item {
	t.Helper()
	items := map[string]dynamo.Item{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		out, err := r.db.Scan(context.Background(), in)
		if err != nil {
			t.Fatalf("scan %s: %v", r.name, err)
		}
		for _, it := range out.Items {
			items[it["pk"].(*types.AttributeValueMemberS).Value] = toItem(it)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return items
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// toItem renders an SDK item in DynamoDB's JSON, as the change feed carries items.
func toItem(m map[string]types.AttributeValue) dynamo.Item {
	it := dynamo.Item{}
	for k, v := range m {
		raw, err := json.Marshal(wire(v))
		if err != nil {
			panic(err)
		}
		it[k] = raw
	}
	return it
}

func wire(v types.AttributeValue) any {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": x.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": x.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": x.Value}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": x.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": x.Value}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": x.Value}
	case *types.AttributeValueMemberNS:
		return map[string]any{"NS": x.Value}
	case *types.AttributeValueMemberBS:
		return map[string]any{"BS": x.Value}
	case *types.AttributeValueMemberM:
		m := map[string]any{}
		for k, e := range x.Value {
			m[k] = wire(e)
		}
		return map[string]any{"M": m}
	case *types.AttributeValueMemberL:
		l := []any{}
		for _, e := range x.Value {
			l = append(l, wire(e))
		}
		return map[string]any{"L": l}
	}
	panic(fmt.Sprintf("unknown attribute value %T", v))
}

// keyOf reads the "pk" string of a change's key.
func keyOf(c dynamo.Change) string {
	var v struct{ S string }
	if err := json.Unmarshal(c.Key["pk"], &v); err != nil {
		panic(err)
	}
	return v.S
}

// diff describes how two tables differ, item by item ("" if they are equal).
func diff(got, want map[string]dynamo.Item) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(merge(got, want))) {
		g, w := got[k], want[k]
		if g.Equal(w) {
			continue
		}
		fmt.Fprintf(&b, "\n  %s: got %s, want %s", k, show(g), show(w))
	}
	return b.String()
}

func merge(a, b map[string]dynamo.Item) map[string]dynamo.Item {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

func show(it dynamo.Item) string {
	if it == nil {
		return "<none>"
	}
	b, _ := json.Marshal(it)
	return string(b)
}

// checkBalance checks that every delivery is accounted for exactly once.
func checkBalance(t testing.TB, st replication.Stats) {
	t.Helper()
	if st.Deliveries != st.Delivered+st.Lost+st.Dropped+st.Pending || st.Delivered != st.Applied+st.Superseded {
		t.Errorf("stats do not balance: %+v", st)
	}
}
