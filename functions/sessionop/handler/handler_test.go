package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/internal/retry"
	"github.com/sessionha/sessionha/local/localtest"
)

var (
	db *dynamodb.Client
	q  *sqs.Client
)

const table = "sessions"

// TestMain runs the handler against the local DynamoDB and fauxqs: no mocks.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	var stop, stopBus func()
	var err error
	if db, stop, err = localtest.DynamoDB(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	if _, q, stopBus, err = localtest.Bus(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopBus()
	if err := localtest.CreateSessionTable(ctx, db, table); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// queues makes an ops queue and its DLQ for one test.
func queues(t *testing.T) (src, dlq string) {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "-") + strconv.FormatInt(time.Now().UnixNano(), 36)
	for i, n := range []string{name, name + "-dlq"} {
		out, err := q.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(n)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			src = aws.ToString(out.QueueUrl)
		} else {
			dlq = aws.ToString(out.QueueUrl)
		}
	}
	return src, dlq
}

// deliver sends bodies to the queue and receives them as the event source mapping hands
// them to the function (a 30 s visibility timeout), keyed by body.
func deliver(t *testing.T, url string, bodies map[string]string) (lambdaevents.SQSEvent, map[string]string) {
	t.Helper()
	ctx := context.Background()
	for _, b := range bodies {
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	names := map[string]string{}
	for name, b := range bodies {
		names[b] = name
	}
	var ev lambdaevents.SQSEvent
	ids := map[string]string{} // name -> message id
	for len(ev.Records) < len(bodies) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, lambdaevents.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body: aws.ToString(m.Body), Attributes: m.Attributes, EventSource: "aws:sqs", EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:ops"})
			ids[names[aws.ToString(m.Body)]] = aws.ToString(m.MessageId)
		}
	}
	return ev, ids
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newHandler(t *testing.T) (*Handler, *logBuf, *logBuf) {
	t.Helper()
	src, dlq := queues(t)
	return newHandlerOn(t, db, src, dlq)
}

func newHandlerOn(t *testing.T, db record.DB, src, dlq string) (*Handler, *logBuf, *logBuf) {
	t.Helper()
	logs, metrics := &logBuf{}, &logBuf{}
	h, err := New(db, q, Config{Table: table, Site: "test", QueueURL: src, DLQURL: dlq}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.metrics = metrics
	return h, logs, metrics
}

var idSeq int

func op(kind events.OpKind, hlc uint64, attrs map[string][]byte) (*events.SessionOp, string) {
	idSeq++
	id := fmt.Sprintf("session-%d-%d", time.Now().UnixNano(), idSeq)
	now := time.Now().UnixMilli()
	o := &events.SessionOp{V: 1, Op: kind, Cluster: "default", ID: events.HashID(id),
		Version: fmt.Sprintf("%016x", hlc), Writer: "w1", Site: "test", At: now}
	if kind != events.OpDestroy {
		o.Session = &events.Session{Principal: "alice", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: 3600, Attrs: attrs}
	}
	return o, id
}

func body(t *testing.T, o *events.SessionOp) string {
	t.Helper()
	b, err := events.EncodeSessionOp(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func get(t *testing.T, o *events.SessionOp) *record.Item {
	t.Helper()
	tb := &record.Table{DB: db, Name: table}
	it, err := tb.Get(context.Background(), record.Key(o.Cluster, o.ID))
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// TestPoisonDeadLetteredAtOnce: each kind of message that can never apply goes to the
// DLQ at its first receive, with its reason as attributes, and is reported done (the
// mapping deletes it from the ops queue); its batch-mates are applied.
func TestPoisonDeadLetteredAtOnce(t *testing.T) {
	src, dlq := queues(t)
	h, logs, metrics := newHandlerOn(t, db, src, dlq)
	good1, _ := op(events.OpCreate, 1<<20, map[string][]byte{"cart": []byte("book")})
	good2, _ := op(events.OpCreate, 1<<20, nil)
	shortID, _ := op(events.OpCreate, 1<<20, nil)
	shortID.ID = "abc"
	shortIDBody, _ := json.Marshal(shortID) // bypass Encode's validation, as a foreign writer might
	poison := map[string]struct{ body, kind string }{
		"malformed":      {`{"v":1,"op":`, "malformed"},
		"schema-version": {strings.Replace(body(t, good2), `"v":1`, `"v":9`, 1), "schema-version"},
		"invalid":        {strings.Replace(body(t, good2), `"op":"create"`, `"op":"merge"`, 1), "invalid"},
		"invalid-id":     {string(shortIDBody), "invalid"},
		"too-large":      {`{"v":1,"pad":"` + strings.Repeat("x", events.MaxMessageBytes) + `"}`, "too-large"},
		"not-an-object":  {`[1,2,3]`, "malformed"},
	}
	bodies := map[string]string{"good-1": body(t, good1), "good-2": body(t, good2)}
	for name, p := range poison {
		bodies[name] = p.body
	}
	ev, ids := deliver(t, src, bodies)

	resp, err := h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatalf("Handle failed the batch: %v", err)
	}
	if len(resp.BatchItemFailures) != 0 {
		t.Errorf("failures %v: want none (poison is dead-lettered, not retried)", resp.BatchItemFailures)
	}
	if it := get(t, good1); it == nil || string(it.Attrs["cart"]) != "book" {
		t.Errorf("batch-mate good-1 not applied: %+v", it)
	}
	if get(t, good2) == nil {
		t.Error("batch-mate good-2 not applied")
	}
	dead := map[string]sqstypes.Message{} // by original message id
	// Poll with a generous deadline: on a loaded machine a long poll may come back empty
	// before the messages show.
	for deadline := time.Now().Add(localtest.Deadline); len(dead) < len(poison) && time.Now().Before(deadline); {
		out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			dead[aws.ToString(m.MessageAttributes[events.DeadLetterMessageID].StringValue)] = m
		}
	}
	if len(dead) != len(poison) {
		t.Errorf("%d messages in the DLQ, want the %d poison ones", len(dead), len(poison))
	}
	for name, p := range poison {
		m, ok := dead[ids[name]]
		if !ok {
			t.Errorf("%s: not in the DLQ", name)
			continue
		}
		if aws.ToString(m.Body) != p.body {
			t.Errorf("%s: the dead letter's body is not the original", name)
		}
		a := func(k string) string { return aws.ToString(m.MessageAttributes[k].StringValue) }
		if a(events.DeadLetterKind) != p.kind || a(events.DeadLetterFunction) != "sessionop" || a(events.DeadLetterReceiveCount) != "1" ||
			!strings.HasPrefix(a(events.DeadLetterReason), "events: ") || a(events.DeadLetterSourceQueue) == "" {
			t.Errorf("%s: dead letter attributes kind %q function %q receives %q reason %q source %q", name, a(events.DeadLetterKind),
				a(events.DeadLetterFunction), a(events.DeadLetterReceiveCount), a(events.DeadLetterReason), a(events.DeadLetterSourceQueue))
		}
		for _, v := range m.MessageAttributes {
			if strings.Contains(aws.ToString(v.StringValue), good2.ID) {
				t.Errorf("%s: a dead letter attribute carries a (hashed) session id", name)
			}
		}
	}
	for _, want := range []string{`"kind":"malformed"`, `"kind":"schema-version"`, `"kind":"invalid"`, `"kind":"too-large"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), good1.ID) {
		t.Error("a log line carries a (hashed) session id")
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(metrics.String())), &m); err != nil {
		t.Fatalf("metrics line is not JSON: %v", err)
	}
	if m["Rejected"] != float64(len(poison)) || m["DeadLettered"] != float64(len(poison)) || m["Applied"] != float64(2) || m["Failed"] != float64(0) || m["_aws"] == nil {
		t.Errorf("metrics %v: want Rejected and DeadLettered %d, Applied 2, Failed 0, and an EMF _aws block", m, len(poison))
	}
}

// TestTableDownRetriedWithBackoff: a valid op whose write fails (the table does not
// answer) is reported failed and hidden on the retry schedule by its receive count, not
// dead-lettered.
func TestTableDownRetriedWithBackoff(t *testing.T) {
	down := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: db.Options().Credentials, RetryMaxAttempts: 1})
	src, dlq := queues(t)
	h, logs, metrics := newHandlerOn(t, down, src, dlq)
	o, _ := op(events.OpCreate, 1<<20, nil)
	ev, ids := deliver(t, src, map[string]string{"op": body(t, o)})
	ev.Records[0].Attributes["ApproximateReceiveCount"] = "4" // the fourth receive: 80 s nominal
	resp, err := h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != ids["op"] {
		t.Fatalf("failures %v, want the op", resp.BatchItemFailures)
	}
	var l struct{ Msg, RetryIn string }
	for _, line := range strings.Split(logs.String(), "\n") {
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "record failed" {
			break
		}
	}
	if d, err := time.ParseDuration(l.RetryIn); err != nil || d < 64*time.Second || d > 80*time.Second {
		t.Errorf("retry in %q, want 64-80s (the fourth wait of 10s doubling, less up to 20 %%):\n%s", l.RetryIn, logs)
	}
	// fauxqs took the change: the op's 30 s receive visibility became about 80 s.
	out, err := q.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(src),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil || out.Attributes["ApproximateNumberOfMessagesNotVisible"] != "1" {
		t.Errorf("ops queue %v %v: want the op in flight", out, err)
	}
	if strings.Contains(logs.String(), "visibility change failed") {
		t.Errorf("the visibility change failed:\n%s", logs)
	}
	if dead, err := q.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlq),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}}); err != nil || dead.Attributes["ApproximateNumberOfMessages"] != "0" {
		t.Errorf("DLQ %v %v: a valid op was dead-lettered", dead, err)
	}
	if !strings.Contains(metrics.String(), `"Failed":1`) {
		t.Errorf("metrics %s: want Failed 1", metrics)
	}
}

// TestStaleDuplicateAndDestroy: a stale or duplicate op changes nothing; a destroy is final.
func TestStaleDuplicateAndDestroy(t *testing.T) {
	h, _, metrics := newHandler(t)
	ctx := context.Background()
	create, _ := op(events.OpCreate, 100<<16, map[string][]byte{"a": []byte("1")})
	save := *create
	save.Op, save.Version = events.OpSave, fmt.Sprintf("%016x", 200<<16)
	save.Session = &events.Session{Principal: "alice", Created: create.Session.Created, LastAccess: create.Session.LastAccess + 1000,
		MaxIdle: 600, MaxLife: 3600, Attrs: map[string][]byte{"a": []byte("2")}}
	destroy := events.SessionOp{V: 1, Op: events.OpDestroy, Cluster: "default", ID: create.ID,
		Version: fmt.Sprintf("%016x", 150<<16), Writer: "w2", Site: "test", At: create.At, Reason: "session-cap"}
	newer := save
	newer.Version = fmt.Sprintf("%016x", 900<<16)

	deliver := func(ops ...*events.SessionOp) {
		t.Helper()
		var ev lambdaevents.SQSEvent
		for i, o := range ops {
			ev.Records = append(ev.Records, lambdaevents.SQSMessage{MessageId: fmt.Sprint(i), Body: body(t, o)})
		}
		resp, err := h.Handle(ctx, ev)
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("Handle: %v %v", resp, err)
		}
	}
	deliver(&save)
	deliver(create, create) // older and duplicated: must not win over the save
	if it := get(t, create); string(it.Attrs["a"]) != "2" {
		t.Fatalf("an older create overwrote a newer save: %q", it.Attrs["a"])
	}
	deliver(&destroy) // older version than the save, yet final
	deliver(&destroy) // a duplicate destroy changes nothing
	deliver(&newer, create, &save)
	it := get(t, create)
	if it.State != record.Destroyed || it.Readable(time.Now()) {
		t.Fatalf("ops after a destroy revived the session: %+v", it)
	}
	// The tombstone tells how the session ended, for the table's stream.
	if it.Reason != "session-cap" || it.Writer != "w2" || it.Site != "test" {
		t.Errorf("tombstone says %q by %q of %q, want the destroy's session-cap by w2 of test", it.Reason, it.Writer, it.Site)
	}
	// Destroyed counts the destroys applied: one, not its duplicate (one EMF line per batch).
	var destroyed, applied float64
	for _, line := range strings.Split(strings.TrimSpace(metrics.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("metrics line is not JSON: %v", err)
		}
		destroyed += m["Destroyed"].(float64)
		applied += m["Applied"].(float64)
	}
	if destroyed != 1 || applied != 2 {
		t.Errorf("metrics count %v destroys and %v applied ops; want 1 and 2 (the save and the destroy)", destroyed, applied)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("SESSIONHA_TABLE", "")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_TABLE") {
		t.Errorf("missing table: %v", err)
	}
	t.Setenv("SESSIONHA_TABLE", "t")
	for _, v := range []string{"SESSIONHA_QUEUE_URL", "SESSIONHA_DLQ_URL"} {
		t.Setenv("SESSIONHA_QUEUE_URL", "http://q")
		t.Setenv("SESSIONHA_DLQ_URL", "http://dlq")
		t.Setenv(v, "")
		if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("missing %s: %v", v, err)
		}
	}
	t.Setenv("SESSIONHA_DLQ_URL", "http://dlq")
	for _, v := range []string{"SESSIONHA_TOMBSTONE_GRACE", "SESSIONHA_RETRY_BASE", "SESSIONHA_RETRY_MAX"} {
		t.Setenv(v, "soon")
		if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("bad %s: %v", v, err)
		}
		t.Setenv(v, "")
	}
	t.Setenv("SESSIONHA_RETRY_BASE", "500ms")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "Base") {
		t.Errorf("a retry base under a second: %v", err)
	}
	t.Setenv("SESSIONHA_TOMBSTONE_GRACE", "2m")
	t.Setenv("SESSIONHA_RETRY_BASE", "2s")
	t.Setenv("SESSIONHA_RETRY_MAX", "1m")
	t.Setenv("SESSIONHA_CLOCK_TOLERANCE", "-1s")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_CLOCK_TOLERANCE") {
		t.Errorf("bad tolerance: %v", err)
	}
	t.Setenv("SESSIONHA_CLOCK_TOLERANCE", "5s")
	if c, err := ConfigFromEnv(); err != nil || c.TombstoneGrace != 2*time.Minute || c.retry() != (retry.Schedule{Base: 2 * time.Second, Max: time.Minute}) ||
		c.QueueURL != "http://q" || c.DLQURL != "http://dlq" || c.ClockTolerance != 5*time.Second {
		t.Errorf("good env: %+v %v", c, err)
	}
	if got := (Config{}).retry(); got != (retry.Schedule{Base: 10 * time.Second, Max: 5 * time.Minute}) {
		t.Errorf("default schedule %+v", got)
	}
}

// TestDestroyKeepsTombstoneUntil: a destroy's until reaches the table: its tombstone
// outlives the session's latest deadline, not just the grace (issue 12, defect 2).
func TestDestroyKeepsTombstoneUntil(t *testing.T) {
	h, _, _ := newHandler(t)
	d, _ := op(events.OpDestroy, 1<<20, nil)
	d.Until = time.Now().Add(8 * time.Hour).UnixMilli()
	resp, err := h.Handle(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "d", Body: body(t, d)}}})
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("destroy: %v %+v", err, resp)
	}
	if it := get(t, d); it == nil || it.State != record.Destroyed || it.ExpiresAt*1000 < d.Until {
		t.Fatalf("tombstone %+v: want it kept until %d", it, d.Until)
	}
}

// TestItemTooLargeRejected: an op whose merged item would be over DynamoDB's 400 KB can
// never apply: it is rejected with its reason, like a malformed message, rather than
// failing the same PutItem on every delivery; the item stays as it was (issue 12,
// defect 8).
func TestItemTooLargeRejected(t *testing.T) {
	h, logs, metrics := newHandler(t)
	create, _ := op(events.OpCreate, 1<<20, map[string][]byte{"k": []byte("v")})
	deliver := func(id string, o *events.SessionOp) lambdaevents.SQSEventResponse {
		t.Helper()
		resp, err := h.Handle(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: id, Body: body(t, o)}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := deliver("create", create); len(r.BatchItemFailures) > 0 {
		t.Fatal("create failed")
	}
	// Deltas removing 200 distinct names of 120 bytes each leave ~28 KB of registers.
	delta := func(n int) *events.SessionOp {
		d := *create
		d.Op, d.Version, d.Session = events.OpDelta, fmt.Sprintf("%016x", 1<<20+n), &events.Session{
			Principal: "alice", Created: create.Session.Created, LastAccess: create.Session.LastAccess, MaxIdle: 600, MaxLife: 3600}
		for i := range 200 {
			d.Remove = append(d.Remove, fmt.Sprintf("%03d-%03d-%s", n, i, strings.Repeat("r", 112)))
		}
		return &d
	}
	n := 1
	for ; ; n++ {
		before := get(t, create)
		resp := deliver(fmt.Sprintf("delta-%d", n), delta(n))
		if len(resp.BatchItemFailures) > 0 {
			t.Fatalf("delta %d reported for a retry: %+v; an op that can never apply goes to the DLQ at once", n, resp)
		}
		after := get(t, create)
		if after.Rev != before.Rev {
			if n > 30 {
				t.Fatalf("%d deltas of 200 registers each applied: the item should be over 400 KB by now", n)
			}
			continue
		}
		if len(after.Removed) != len(before.Removed) {
			t.Errorf("the refused delta changed the item: %d registers; was %d", len(after.Removed), len(before.Removed))
		}
		break
	}
	if n < 10 {
		t.Errorf("refused after %d deltas (%d registers): far below 400 KB", n, 200*(n-1))
	}
	if !strings.Contains(logs.String(), `"kind":"too-large-item"`) || !strings.Contains(logs.String(), "over DynamoDB's limit") {
		t.Errorf("no rejection with its reason logged:\n%s", logs.String())
	}
	if !strings.Contains(metrics.String(), `"Rejected":1`) || !strings.Contains(metrics.String(), `"DeadLettered":1`) {
		t.Errorf("metrics do not count the rejection and its dead letter:\n%s", metrics.String())
	}
}

// TestOneSessionsOpsInABatchDoNotRace: the ops of one session in a batch are applied one
// after another: run at once, they would only make each other's conditional writes fail
// (and a busy session's ops run out of rounds and reach the DLQ); other sessions' ops
// still run alongside.
func TestOneSessionsOpsInABatchDoNotRace(t *testing.T) {
	h, _, metrics := newHandler(t)
	create, _ := op(events.OpCreate, 1<<20, nil)
	if r, err := h.Handle(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "c", Body: body(t, create)}}}); err != nil || len(r.BatchItemFailures) > 0 {
		t.Fatalf("create: %v %+v", err, r)
	}
	var ev lambdaevents.SQSEvent
	for i := range 10 {
		d := *create
		d.Op, d.Version = events.OpDelta, fmt.Sprintf("%016x", 1<<20+1+i)
		s := *create.Session
		s.Attrs, s.LastAccess = nil, s.LastAccess+int64(i)
		d.Session, d.Set = &s, map[string][]byte{fmt.Sprintf("k%d", i): []byte("v")}
		ev.Records = append(ev.Records, lambdaevents.SQSMessage{MessageId: fmt.Sprint(i), Body: body(t, &d)})
	}
	metrics.b.Reset()
	resp, err := h.Handle(context.Background(), ev)
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("ten deltas of one session: %v, failures %+v", err, resp.BatchItemFailures)
	}
	if it := get(t, create); len(it.Attrs) != 10 {
		t.Errorf("%d attributes after ten deltas, want 10", len(it.Attrs))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(metrics.String())), &m); err != nil {
		t.Fatalf("metrics line is not JSON: %v", err)
	}
	if m["Conflicts"] != float64(0) || m["Applied"] != float64(10) {
		t.Errorf("metrics %v: want 10 applied and no lost conditional write", m)
	}
}
