package lambdarunner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/local/dynamo"
)

// streamTable is a replica with a table "items" (key pk, a stream of new and old images,
// TTL on "ttl") and a table "other" with a stream too, and a client for them.
type streamTable struct {
	replica *dynamo.Replica
	db      *dynamodb.Client
	arn     string // items' LatestStreamArn
}

func newStreamTable(t *testing.T) *streamTable {
	t.Helper()
	r := dynamo.New(dynamo.Options{Region: "us-east-1", TTLPeriod: time.Hour})
	srv, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); r.Close() })
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	ctx := context.Background()
	for _, name := range []string{"items", "other", "nostream"} {
		in := &dynamodb.CreateTableInput{
			TableName: aws.String(name), BillingMode: ddbtypes.BillingModePayPerRequest,
			AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
			KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		}
		if name != "nostream" {
			in.StreamSpecification = &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: ddbtypes.StreamViewTypeNewAndOldImages}
		}
		if _, err := db.CreateTable(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("items"),
		TimeToLiveSpecification: &ddbtypes.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("items")})
	if err != nil {
		t.Fatal(err)
	}
	return &streamTable{replica: r, db: db, arn: aws.ToString(d.Table.LatestStreamArn)}
}

// put writes an item of table items (or another): attributes as name, value pairs.
func (st *streamTable) put(t *testing.T, table, pk string, attrs ...string) {
	t.Helper()
	it := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}
	for i := 0; i < len(attrs); i += 2 {
		if attrs[i] == "ttl" {
			it["ttl"] = &ddbtypes.AttributeValueMemberN{Value: attrs[i+1]}
			continue
		}
		it[attrs[i]] = &ddbtypes.AttributeValueMemberS{Value: attrs[i+1]}
	}
	if _, err := st.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
		t.Fatal(err)
	}
}

func (st *streamTable) del(t *testing.T, pk string) {
	t.Helper()
	if _, err := st.db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String("items"),
		Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: pk}}}); err != nil {
		t.Fatal(err)
	}
}

// streamRunner is a runner whose stream mappings read st, and the test function started
// on it, its output in out.
func streamRunner(t *testing.T, st *streamTable) (*Func, *lines) {
	t.Helper()
	r := New(Config{SQS: sqsClient(), DynamoDB: st.db, Logger: testLogger()})
	t.Cleanup(r.Stop)
	out := &lines{}
	fn := start(t, r, Function{Output: out, Env: map[string]string{"ECHOFN_STATE_DIR": t.TempDir()}})
	return fn, out
}

// streamRec is one of the "stream-record" lines echofn prints.
type streamRec struct {
	Msg            string `json:"msg"`
	RequestID      string `json:"requestId"`
	Seq            string `json:"seq"`
	EventName      string `json:"eventName"`
	EventSource    string `json:"eventSource"`
	EventSourceARN string `json:"eventSourceARN"`
	AWSRegion      string `json:"awsRegion"`
	Identity       string `json:"identity"`
	PK             string `json:"pk"`
	HasOld         bool   `json:"hasOld"`
	HasNew         bool   `json:"hasNew"`
	V              string `json:"v"`
	At             int64  `json:"at"`
	ViewType       string `json:"viewType"`
	BatchSize      int    `json:"batchSize"`
}

func (l *lines) streamRecords() []streamRec {
	var recs []streamRec
	for _, s := range l.snapshot() {
		var r streamRec
		if json.Unmarshal([]byte(s), &r) == nil && r.Msg == "stream-record" {
			recs = append(recs, r)
		}
	}
	return recs
}

// deliveries counts the deliveries of each pk, and lists the pks in delivery order.
func deliveries(recs []streamRec) (map[string]int, []string) {
	n := map[string]int{}
	var order []string
	for _, r := range recs {
		n[r.PK]++
		order = append(order, r.PK)
	}
	return n, order
}

// TestStreamRecords: each kind of change reaches the function as Lambda shapes a
// DynamoDB stream record, in order, and only the mapped table's.
func TestStreamRecords(t *testing.T) {
	st := newStreamTable(t)
	fn, out := streamRunner(t, st)
	if err := fn.MapStream(context.Background(), StreamMapping{Feed: st.replica, Table: "items", ReportBatchItemFailures: true}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Unix()
	st.put(t, "items", "a", "v", "1")
	st.put(t, "items", "a", "v", "2")
	st.put(t, "items", "a", "v", "2") // the same again: no change, no record (as on AWS)
	st.put(t, "other", "x", "v", "9") // another table's stream
	st.put(t, "items", "b", "v", "3")
	st.del(t, "b")
	st.put(t, "items", "c", "v", "4", "ttl", strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10))
	if n := st.replica.Sweep(); n != 1 {
		t.Fatalf("the TTL sweep deleted %d items, want 1", n)
	}
	eventually(t, 20*time.Second, "6 records", func() bool { return len(out.streamRecords()) >= 6 })
	time.Sleep(200 * time.Millisecond) // nothing more may come
	recs := out.streamRecords()
	type want struct {
		pk, name, v, identity string
		old, new              bool
	}
	wants := []want{
		{"a", "INSERT", "1", "", false, true},
		{"a", "MODIFY", "2", "", true, true},
		{"b", "INSERT", "3", "", false, true},
		{"b", "REMOVE", "3", "", true, false},
		{"c", "INSERT", "4", "", false, true},
		{"c", "REMOVE", "4", "Service/dynamodb.amazonaws.com", true, false},
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(wants), recs)
	}
	for i, w := range wants {
		r := recs[i]
		got := want{r.PK, r.EventName, r.V, r.Identity, r.HasOld, r.HasNew}
		if got != w {
			t.Errorf("record %d: %+v, want %+v", i, got, w)
		}
		if r.EventSource != "aws:dynamodb" || r.EventSourceARN != st.arn || r.AWSRegion != "us-east-1" || r.ViewType != "NEW_AND_OLD_IMAGES" {
			t.Errorf("record %d: source %s %s %s view %s; want aws:dynamodb %s us-east-1 NEW_AND_OLD_IMAGES", i, r.EventSource, r.EventSourceARN, r.AWSRegion, r.ViewType, st.arn)
		}
		if r.At < before-1 || r.At > time.Now().Unix()+1 {
			t.Errorf("record %d: approximate creation time %d, not now", i, r.At)
		}
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Errorf("record %d: sequence number %s not after %s", i, r.Seq, recs[i-1].Seq)
		}
	}
	if !strings.Contains(st.arn, ":table/items/stream/") {
		t.Errorf("stream ARN %s", st.arn)
	}
}

// TestStreamBatching: records come in batches of at most BatchSize, gathered for the
// batching window, each record once and in order.
func TestStreamBatching(t *testing.T) {
	st := newStreamTable(t)
	fn, out := streamRunner(t, st)
	if err := fn.MapStream(context.Background(), StreamMapping{Feed: st.replica, Table: "items", BatchSize: 5,
		BatchingWindow: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 12 {
		pk := fmt.Sprintf("k%02d", i)
		want = append(want, pk)
		st.put(t, "items", pk, "v", "x")
	}
	eventually(t, 20*time.Second, "12 records", func() bool { return len(out.streamRecords()) >= 12 })
	recs := out.streamRecords()
	n, order := deliveries(recs)
	if !slices.Equal(order, want) {
		t.Errorf("delivered %v, want %v once each in order", order, want)
	}
	sizes := map[string]int{}
	for _, r := range recs {
		if r.BatchSize > 5 {
			t.Errorf("a batch of %d records, over BatchSize 5", r.BatchSize)
		}
		sizes[r.RequestID] = r.BatchSize
	}
	if len(sizes) > 4 {
		t.Errorf("%d invocations for 12 records written at once with batches of 5 and a window: not batched", len(sizes))
	}
	for pk, c := range n {
		if c != 1 {
			t.Errorf("%s delivered %d times", pk, c)
		}
	}
}

// TestStreamPartialBatchFailure: a record reported failed is the checkpoint: the records
// before it are done, it and those after it come again, until it succeeds.
func TestStreamPartialBatchFailure(t *testing.T) {
	st := newStreamTable(t)
	fn, out := streamRunner(t, st)
	if err := fn.MapStream(context.Background(), StreamMapping{Feed: st.replica, Table: "items", BatchingWindow: time.Second,
		ReportBatchItemFailures: true, RetryWait: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	st.put(t, "items", "r1", "v", "1")
	st.put(t, "items", "r2", "v", "2", "do", "failtimes:2")
	st.put(t, "items", "r3", "v", "3")
	eventually(t, 20*time.Second, "r3 delivered three times", func() bool {
		n, _ := deliveries(out.streamRecords())
		return n["r3"] >= 3
	})
	time.Sleep(300 * time.Millisecond)
	n, order := deliveries(out.streamRecords())
	if n["r1"] != 1 || n["r2"] != 3 || n["r3"] != 3 {
		t.Errorf("deliveries %v (in order %v), want r1 once, r2 and r3 three times (retried from the checkpoint r2)", n, order)
	}
	if want := []string{"r1", "r2", "r3", "r2", "r3", "r2", "r3"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	// Without ReportBatchItemFailures the same response is a success.
	st2 := newStreamTable(t)
	fn2, out2 := streamRunner(t, st2)
	if err := fn2.MapStream(context.Background(), StreamMapping{Feed: st2.replica, Table: "items"}); err != nil {
		t.Fatal(err)
	}
	st2.put(t, "items", "f", "do", "fail")
	st2.put(t, "items", "g")
	eventually(t, 20*time.Second, "g delivered", func() bool { n, _ := deliveries(out2.streamRecords()); return n["g"] > 0 })
	time.Sleep(300 * time.Millisecond)
	if n, _ := deliveries(out2.streamRecords()); n["f"] != 1 {
		t.Errorf("without ReportBatchItemFailures a reported record came %d times, want once", n["f"])
	}
}

// onFailure is a DDBStreamBatchInfo message of an on-failure destination.
type onFailure struct {
	RequestContext struct {
		Condition              string `json:"condition"`
		FunctionArn            string `json:"functionArn"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	Version string `json:"version"`
	Info    struct {
		ShardID             string `json:"shardId"`
		StartSequenceNumber string `json:"startSequenceNumber"`
		EndSequenceNumber   string `json:"endSequenceNumber"`
		BatchSize           int    `json:"batchSize"`
		StreamArn           string `json:"streamArn"`
	} `json:"DDBStreamBatchInfo"`
}

func receiveOnFailure(t *testing.T, c *sqs.Client, url string) []onFailure {
	t.Helper()
	out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []onFailure
	for _, m := range out.Messages {
		var f onFailure
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &f); err != nil {
			t.Fatalf("on-failure message %s: %v", aws.ToString(m.Body), err)
		}
		got = append(got, f)
	}
	return got
}

// TestStreamBisectToOnFailure: a record that always fails its invocation is narrowed down
// by bisection until it is alone, retried, then discarded: the on-failure destination
// names exactly it, and every other record is delivered.
func TestStreamBisectToOnFailure(t *testing.T) {
	st := newStreamTable(t)
	fn, out := streamRunner(t, st)
	c := sqsClient()
	q := makeQueues(t, c)
	if err := fn.MapStream(context.Background(), StreamMapping{Feed: st.replica, Table: "items", BatchingWindow: time.Second,
		BisectOnError: true, RetryAttempts: 1, OnFailureQueueURL: q.dlqURL, ReportBatchItemFailures: true, RetryWait: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if i == 5 {
			st.put(t, "items", "p5", "do", "error")
			continue
		}
		st.put(t, "items", fmt.Sprintf("p%d", i))
	}
	var failures []onFailure
	eventually(t, 30*time.Second, "the poison record discarded", func() bool {
		failures = append(failures, receiveOnFailure(t, c, q.dlqURL)...)
		return len(failures) > 0
	})
	// Every other record is delivered in a batch that succeeds (one without p5).
	okays := func() (map[string]bool, map[string][]string) {
		ok := map[string]bool{}
		byRequest := map[string][]string{}
		for _, r := range out.streamRecords() {
			byRequest[r.RequestID] = append(byRequest[r.RequestID], r.PK)
		}
		for _, pks := range byRequest {
			if !slices.Contains(pks, "p5") {
				for _, pk := range pks {
					ok[pk] = true
				}
			}
		}
		return ok, byRequest
	}
	eventually(t, 20*time.Second, "every other record delivered", func() bool { ok, _ := okays(); return len(ok) == 7 })
	if ok, byRequest := okays(); ok["p5"] {
		t.Errorf("p5 in a successful batch: %v", byRequest)
	}
	var poison string
	for _, r := range out.streamRecords() {
		if r.PK == "p5" {
			poison = r.Seq
		}
	}
	f := failures[0]
	if len(failures) != 1 || f.Info.BatchSize != 1 || f.Info.StartSequenceNumber != poison || f.Info.EndSequenceNumber != poison {
		t.Fatalf("on-failure messages %+v; want one naming p5 (%s) alone", failures, poison)
	}
	if f.RequestContext.Condition != "RetryAttemptsExhausted" || f.Info.StreamArn != st.arn || f.Version != "1.0" ||
		f.RequestContext.FunctionArn != fn.ARN() || f.RequestContext.ApproximateInvokeCount < 2 {
		t.Errorf("on-failure message %+v", f)
	}
	if more := receiveOnFailure(t, c, q.dlqURL); len(more) > 0 {
		t.Errorf("more batches discarded: %+v", more)
	}
}

// TestStreamInvalidReport: a partial batch response with an empty itemIdentifier fails
// the whole batch.
func TestStreamInvalidReport(t *testing.T) {
	st := newStreamTable(t)
	fn, out := streamRunner(t, st)
	c := sqsClient()
	q := makeQueues(t, c)
	if err := fn.MapStream(context.Background(), StreamMapping{Feed: st.replica, Table: "items", ReportBatchItemFailures: true,
		RetryAttempts: 2, OnFailureQueueURL: q.dlqURL, RetryWait: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	st.put(t, "items", "bad", "do", "badreport")
	var failures []onFailure
	eventually(t, 20*time.Second, "the batch discarded", func() bool {
		failures = append(failures, receiveOnFailure(t, c, q.dlqURL)...)
		return len(failures) > 0
	})
	if n, _ := deliveries(out.streamRecords()); n["bad"] != 3 {
		t.Errorf("delivered %d times, want 3 (the first try and 2 retries)", n["bad"])
	}
}

func TestMapStreamValidation(t *testing.T) {
	st := newStreamTable(t)
	fn, _ := streamRunner(t, st)
	ctx := context.Background()
	for _, tc := range []struct {
		m    StreamMapping
		want string
	}{
		{StreamMapping{Table: "items"}, "Feed"},
		{StreamMapping{Feed: st.replica}, "Table"},
		{StreamMapping{Feed: st.replica, Table: "nostream"}, "no stream"},
		{StreamMapping{Feed: st.replica, Table: "missing"}, "missing"},
		{StreamMapping{Feed: st.replica, Table: "items", BatchSize: 10001}, "BatchSize"},
		{StreamMapping{Feed: st.replica, Table: "items", StartingPosition: "AT_TIMESTAMP"}, "StartingPosition"},
		{StreamMapping{Feed: st.replica, Table: "items", RetryAttempts: -1}, "RetryAttempts"},
		{StreamMapping{Feed: st.replica, Table: "items", MaxRecordAge: time.Second}, "MaxRecordAge"},
	} {
		if err := fn.MapStream(ctx, tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.m, err, tc.want)
		}
	}
	r := New(Config{Logger: testLogger()})
	defer r.Stop()
	f := start(t, r, Function{Name: "no-dynamodb"})
	if err := f.MapStream(ctx, StreamMapping{Feed: st.replica, Table: "items"}); err == nil || !strings.Contains(err.Error(), "Config.DynamoDB") {
		t.Errorf("without a DynamoDB client: %v", err)
	}
}

func TestStreamCheckpointRules(t *testing.T) {
	var recs []events.DynamoDBEventRecord
	for _, seq := range []uint64{11, 12, 13} {
		var r events.DynamoDBEventRecord
		r.Change.SequenceNumber = SequenceNumber(seq)
		recs = append(recs, r)
	}
	for _, tc := range []struct {
		out  string
		at   int
		okay bool
	}{
		{``, -1, true},
		{`null`, -1, true},
		{`{}`, -1, true},
		{`{"batchItemFailures":[]}`, -1, true},
		{`{"batchItemFailures":null}`, -1, true},
		{`{"batchItemFailures":[{"itemIdentifier":"000000000000000000012"}]}`, 1, true},
		{`{"batchItemFailures":[{"itemIdentifier":"000000000000000000013"},{"itemIdentifier":"000000000000000000012"}]}`, 1, true},
		{`{"batchItemFailures":[{"itemIdentifier":""}]}`, 0, false},
		{`{"batchItemFailures":[{"itemIdentifier":null}]}`, 0, false},
		{`{"batchItemFailures":[{"id":"000000000000000000012"}]}`, 0, false},
		{`{"batchItemFailures":[{"itemIdentifier":"000000000000000000099"}]}`, 0, false},
		{`not json`, 0, false},
	} {
		at, ok := streamCheckpoint([]byte(tc.out), recs)
		if ok != tc.okay || ok && at != tc.at {
			t.Errorf("%s: checkpoint %d ok=%v, want %d ok=%v", tc.out, at, ok, tc.at, tc.okay)
		}
	}
}
