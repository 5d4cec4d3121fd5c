package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	sessionevents "github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/retry"
	"github.com/sessionha/sessionha/local/localtest"
)

var q *sqs.Client

// TestMain runs the runner against fauxqs: real queues, real receipt handles.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	_, c, stop, err := localtest.Bus(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	q = c
	return m.Run()
}

// recorder passes calls to fauxqs and remembers the visibility changes and their results.
type recorder struct {
	SQS
	mu     sync.Mutex
	hidden map[string]int32 // receipt handle -> seconds
	errs   []error
}

func (r *recorder) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	out, err := r.SQS.ChangeMessageVisibility(ctx, in, opts...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hidden == nil {
		r.hidden = map[string]int32{}
	}
	r.hidden[aws.ToString(in.ReceiptHandle)] = in.VisibilityTimeout
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return out, err
}

type fixture struct {
	src, srcARN, dlq string
}

func queues(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	name := strings.ReplaceAll(t.Name(), "/", "-") + strconv.FormatInt(time.Now().UnixNano(), 36)
	mk := func(name string) string {
		out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"VisibilityTimeout": "1"}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.QueueUrl)
	}
	f := fixture{dlq: mk(name + "-dlq"), src: mk(name)}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(f.src), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	f.srcARN = attrs.Attributes["QueueArn"]
	return f
}

// receive sends bodies to the source queue and receives them as a Lambda event would
// carry them (a 1 s visibility timeout: the queue's own).
func (f fixture) receive(t *testing.T, bodies ...string) events.SQSEvent {
	t.Helper()
	ctx := context.Background()
	for _, b := range bodies {
		_, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.src), MessageBody: aws.String(b),
			MessageAttributes: map[string]types.MessageAttributeValue{"op": {DataType: aws.String("String"), StringValue: aws.String("create")}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var ev events.SQSEvent
	for len(ev.Records) < len(bodies) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.src), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			rec := events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
				Attributes: m.Attributes, EventSourceARN: f.srcARN, EventSource: "aws:sqs", MessageAttributes: map[string]events.SQSMessageAttribute{}}
			for k, v := range m.MessageAttributes {
				rec.MessageAttributes[k] = events.SQSMessageAttribute{DataType: aws.ToString(v.DataType), StringValue: v.StringValue}
			}
			ev.Records = append(ev.Records, rec)
		}
	}
	return ev
}

func newRunner(t *testing.T, f fixture, rec *recorder, s retry.Schedule) (*Runner, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	rec.SQS = q
	r, err := New(Config{Function: "testfn", SQS: rec, QueueURL: f.src, DLQURL: f.dlq, Retry: s, Log: slog.New(slog.NewJSONHandler(&syncWriter{w: logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// apply: "poison..." can never apply, "fail..." fails for now, "panic" panics.
func apply(_ context.Context, rec *events.SQSMessage) error {
	switch {
	case strings.HasPrefix(rec.Body, "poison"):
		return Poison("malformed", errors.New("events: malformed session op: unexpected end of JSON input"))
	case strings.HasPrefix(rec.Body, "fail"):
		return errors.New("put item: throttled")
	case rec.Body == "panic":
		panic("boom")
	}
	return nil
}

func failures(resp events.SQSEventResponse, ev events.SQSEvent) []string {
	body := map[string]string{}
	for _, r := range ev.Records {
		body[r.MessageId] = r.Body
	}
	var out []string
	for _, f := range resp.BatchItemFailures {
		out = append(out, body[f.ItemIdentifier])
	}
	return out
}

// TestPoisonDeadLetteredAtOnce: a record that can never apply is sent to the DLQ at its
// first receive with its reason, where from and after how many receives, its own
// attributes kept, and is reported done (so the mapping deletes it); its batch-mates are
// untouched; one that failed for now is hidden on the schedule and reported failed.
func TestPoisonDeadLetteredAtOnce(t *testing.T) {
	f := queues(t)
	rec := &recorder{}
	r, logs := newRunner(t, f, rec, retry.Schedule{Base: 30 * time.Second, Max: time.Minute})
	ev := f.receive(t, "ok", "poison", "fail", "panic")
	var c Counters
	resp := r.Run(context.Background(), ev, &c, apply)

	got := failures(resp, ev)
	if len(got) != 2 || !(got[0] == "fail" && got[1] == "panic" || got[0] == "panic" && got[1] == "fail") {
		t.Errorf("failures %v, want fail and panic: the poison one is done, dead-lettered", got)
	}
	if c.Get(CounterRejected) != 1 || c.Get(CounterDeadLettered) != 1 || c.Get(CounterFailed) != 2 {
		t.Errorf("counters rejected %d dead-lettered %d failed %d, want 1 1 2", c.Get(CounterRejected), c.Get(CounterDeadLettered), c.Get(CounterFailed))
	}
	out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageAttributeNames: []string{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "poison" {
		t.Fatalf("DLQ holds %d messages, want the poison one", len(out.Messages))
	}
	var poisonID string
	for _, rc := range ev.Records {
		if rc.Body == "poison" {
			poisonID = rc.MessageId
		}
	}
	attrs := out.Messages[0].MessageAttributes
	want := map[string]string{
		sessionevents.DeadLetterKind:         "malformed",
		sessionevents.DeadLetterReason:       "events: malformed session op: unexpected end of JSON input",
		sessionevents.DeadLetterFunction:     "testfn",
		sessionevents.DeadLetterSourceQueue:  f.srcARN,
		sessionevents.DeadLetterMessageID:    poisonID,
		sessionevents.DeadLetterReceiveCount: "1",
		"op":                                 "create",
	}
	for k, v := range want {
		if got := aws.ToString(attrs[k].StringValue); got != v {
			t.Errorf("dead letter attribute %s = %q, want %q", k, got, v)
		}
	}
	if len(attrs) != len(want) {
		t.Errorf("dead letter attributes %v, want exactly %v", attrs, want)
	}
	// The failed ones are hidden for the first delay of the schedule: 24-30 s.
	rec.mu.Lock()
	hidden, errs := rec.hidden, rec.errs
	rec.mu.Unlock()
	if len(hidden) != 2 || len(errs) != 0 {
		t.Fatalf("visibility changes %v, errors %v: want the two failed records hidden", hidden, errs)
	}
	for _, s := range hidden {
		if s < 24 || s > 30 {
			t.Errorf("hidden for %d s, want 24-30 (base 30 s less up to 20 %%)", s)
		}
	}
	// As the event source mapping does: delete what is done. The queue's own visibility
	// (1 s) has passed by the end of this long poll: the failed ones stay hidden.
	for _, rc := range ev.Records {
		if !slices.Contains(got, rc.Body) {
			if _, err := q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(f.src), ReceiptHandle: aws.String(rc.ReceiptHandle)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.src), WaitTimeSeconds: 3}); err != nil || len(out.Messages) != 0 {
		t.Errorf("a failed record came back before its delay: %v %v", out, err)
	}
	for _, want := range []string{`"msg":"record rejected"`, `"kind":"malformed"`, `"deadLettered":true`, `"msg":"record failed"`, `"retryIn":"`, `panic: boom`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestBackoffGrowsWithReceiveCount: the n-th receive of a failing record hides it for
// the schedule's n-th delay.
func TestBackoffGrowsWithReceiveCount(t *testing.T) {
	f := queues(t)
	rec := &recorder{}
	s := retry.Schedule{Base: 2 * time.Second, Max: 20 * time.Second}
	r, _ := newRunner(t, f, rec, s)
	ev := f.receive(t, "fail-1", "fail-3", "fail-9")
	for i := range ev.Records {
		ev.Records[i].Attributes["ApproximateReceiveCount"] = strings.TrimPrefix(ev.Records[i].Body, "fail-")
	}
	var c Counters
	if resp := r.Run(context.Background(), ev, &c, apply); len(resp.BatchItemFailures) != 3 {
		t.Fatalf("failures %v", resp.BatchItemFailures)
	}
	for _, rc := range ev.Records {
		n, _ := strconv.Atoi(rc.Attributes["ApproximateReceiveCount"])
		got := time.Duration(rec.hidden[rc.ReceiptHandle]) * time.Second
		if got < s.Least(n) || got > s.Nominal(n) {
			t.Errorf("receive %d hidden for %s, want %s-%s", n, got, s.Least(n), s.Nominal(n))
		}
	}
	if len(rec.errs) != 0 {
		t.Errorf("visibility changes failed: %v", rec.errs)
	}
}

// TestDeadLetterSendFails: if the DLQ refuses the message, the record is reported failed
// (nothing lost) and comes back after the schedule's base.
func TestDeadLetterSendFails(t *testing.T) {
	f := queues(t)
	f.dlq = f.src + "-no-such-queue"
	rec := &recorder{}
	r, logs := newRunner(t, f, rec, retry.Schedule{Base: 5 * time.Second, Max: time.Minute})
	ev := f.receive(t, "poison", "ok")
	ev.Records[0].Attributes["ApproximateReceiveCount"] = "7"
	ev.Records[1].Attributes["ApproximateReceiveCount"] = "7"
	var c Counters
	resp := r.Run(context.Background(), ev, &c, apply)
	if got := failures(resp, ev); len(got) != 1 || got[0] != "poison" {
		t.Errorf("failures %v, want the poison one, which could not be dead-lettered", got)
	}
	if c.Get(CounterRejected) != 1 || c.Get(CounterDeadLettered) != 0 {
		t.Errorf("rejected %d dead-lettered %d, want 1 0", c.Get(CounterRejected), c.Get(CounterDeadLettered))
	}
	var poison events.SQSMessage
	for _, rc := range ev.Records {
		if rc.Body == "poison" {
			poison = rc
		}
	}
	if s := rec.hidden[poison.ReceiptHandle]; s < 4 || s > 5 {
		t.Errorf("hidden for %d s, want the base (4-5 s), whatever its receive count", s)
	}
	if !strings.Contains(logs.String(), `"deadLettered":false`) {
		t.Errorf("log does not say the dead letter was not sent:\n%s", logs)
	}
}

// TestApplyStopsBeforeTheDeadline: a record whose apply would outlast the invocation is
// cut off early enough that it can still be hidden before the deadline.
func TestApplyStopsBeforeTheDeadline(t *testing.T) {
	f := queues(t)
	rec := &recorder{}
	r, _ := newRunner(t, f, rec, retry.Schedule{Base: 10 * time.Second, Max: time.Minute})
	ev := f.receive(t, "slow")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var left time.Duration
	var c Counters
	resp := r.Run(ctx, ev, &c, func(ctx context.Context, _ *events.SQSMessage) error {
		<-ctx.Done()
		left = time.Until(deadline)
		return ctx.Err()
	})
	if len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failures %v", resp.BatchItemFailures)
	}
	if left < 200*time.Millisecond {
		t.Errorf("apply's context ended %s before the invocation's deadline; want time left to settle", left)
	}
	if s, ok := rec.hidden[ev.Records[0].ReceiptHandle]; !ok || s < 8 || len(rec.errs) != 0 {
		t.Errorf("the cut-off record was not hidden: %d s, errors %v", s, rec.errs)
	}
}

func TestNewRequires(t *testing.T) {
	ok := Config{Function: "f", SQS: q, QueueURL: "u", DLQURL: "d", Retry: retry.Schedule{Base: time.Second, Max: time.Second}}
	for name, mod := range map[string]func(*Config){
		"Function": func(c *Config) { c.Function = "" },
		"SQS":      func(c *Config) { c.SQS = nil },
		"QueueURL": func(c *Config) { c.QueueURL = "" },
		"DLQURL":   func(c *Config) { c.DLQURL = "" },
		"Base":     func(c *Config) { c.Retry.Base = 0 },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
	if _, err := New(ok); err != nil {
		t.Error(err)
	}
}
