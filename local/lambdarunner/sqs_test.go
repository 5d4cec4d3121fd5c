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
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// queues is a source queue and its dead-letter queue in fauxqs.
type queues struct {
	url, arn       string
	dlqURL, dlqARN string
}

// makeQueues creates, for this test, a queue with a 1 s visibility timeout whose
// redrive policy moves a message to its DLQ after 2 receives.
func makeQueues(t *testing.T, c *sqs.Client) queues {
	t.Helper()
	ctx := context.Background()
	// Unique per run: fauxqs outlives a test, and -count=N repeats the names.
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + "-" + randomHex(8)
	var q queues
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	q.dlqURL = aws.ToString(dlq.QueueUrl)
	q.dlqARN = queueARN(t, c, q.dlqURL)
	policy, _ := json.Marshal(map[string]string{"deadLetterTargetArn": q.dlqARN, "maxReceiveCount": "2"})
	src, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": "1", "RedrivePolicy": string(policy)},
	})
	if err != nil {
		t.Fatal(err)
	}
	q.url = aws.ToString(src.QueueUrl)
	q.arn = queueARN(t, c, q.url)
	return q
}

func queueARN(t *testing.T, c *sqs.Client, url string) string {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes["QueueArn"]
}

// depth is how many messages a queue holds, visible or in flight.
func depth(t *testing.T, c *sqs.Client, url string) int {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, types.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range out.Attributes {
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("queue attributes %v: %v", out.Attributes, err)
		}
		n += i
	}
	return n
}

// send sends bodies in batches and returns their message ids, in order.
func send(t *testing.T, c *sqs.Client, url string, bodies ...string) []string {
	t.Helper()
	ids := make([]string, len(bodies))
	for start := 0; start < len(bodies); start += 10 {
		end := min(start+10, len(bodies))
		var entries []types.SendMessageBatchRequestEntry
		for i := start; i < end; i++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id:          aws.String(strconv.Itoa(i)),
				MessageBody: aws.String(bodies[i]),
				MessageAttributes: map[string]types.MessageAttributeValue{
					"seq": {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(i))},
				},
			})
		}
		out, err := c.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("send: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		for _, ok := range out.Successful {
			i, _ := strconv.Atoi(aws.ToString(ok.Id))
			ids[i] = aws.ToString(ok.MessageId)
		}
	}
	return ids
}

// drain reads every message of a queue (leaving them invisible for a minute) and
// returns their bodies, sorted.
func drain(t *testing.T, c *sqs.Client, url string, want int) []string {
	t.Helper()
	var bodies []string
	deadline := time.Now().Add(10 * time.Second)
	for len(bodies) < want && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
	slices.Sort(bodies)
	return bodies
}

// seen maps message ids to the receive counts the function saw them with.
func seen(recs []record) map[string][]string {
	m := map[string][]string{}
	for _, r := range recs {
		m[r.MessageID] = append(m[r.MessageID], r.ReceiveCount)
	}
	return m
}

func TestSQSPartialBatchResponse(t *testing.T) {
	t.Parallel()
	c := sqsClient()
	q := makeQueues(t, c)
	var bodies []string
	for i := range 20 {
		bodies = append(bodies, fmt.Sprintf("good-%02d", i))
	}
	bodies = append(bodies, "fail-a", "fail-b")
	ids := send(t, c, q.url, bodies...)

	r := newRunner(t)
	var out lines
	fn := start(t, r, Function{Concurrency: 2, Timeout: time.Second, Output: &out})
	if err := fn.MapSQS(context.Background(), SQSMapping{QueueURL: q.url, BatchSize: 10, ReportBatchItemFailures: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the queue to empty and the DLQ to hold the 2 failures", func() bool {
		return depth(t, c, q.url) == 0 && depth(t, c, q.dlqURL) == 2
	})
	if got := drain(t, c, q.dlqURL, 2); !slices.Equal(got, []string{"fail-a", "fail-b"}) {
		t.Errorf("DLQ holds %q, want the 2 failing messages", got)
	}

	recs := out.records()
	counts := seen(recs)
	for i, id := range ids[:20] {
		if len(counts[id]) == 0 {
			t.Errorf("good message %d (%s) never reached the function", i, id)
		}
	}
	for _, id := range ids[20:] {
		if !slices.Contains(counts[id], "1") || !slices.Contains(counts[id], "2") {
			t.Errorf("failing message %s seen with receive counts %v, want 1 and 2 (then the DLQ)", id, counts[id])
		}
	}
	// The records look like Lambda's.
	r0 := recs[0]
	if r0.EventSource != "aws:sqs" || r0.EventSourceARN != q.arn || r0.AWSRegion != "us-east-1" || !r0.MD5OK || !r0.ReceiptHandle ||
		!slices.Equal(r0.MessageAttributes, []string{"seq:Number"}) {
		t.Errorf("record %+v does not look like Lambda's", r0)
	}
	for _, a := range []string{"ApproximateFirstReceiveTimestamp", "ApproximateReceiveCount", "SenderId", "SentTimestamp"} {
		if !slices.Contains(r0.Attributes, a) {
			t.Errorf("record attributes %v lack %s", r0.Attributes, a)
		}
	}
	maxBatch := 0
	for _, rec := range recs {
		maxBatch = max(maxBatch, rec.BatchSize)
	}
	if maxBatch > 10 {
		t.Errorf("a batch of %d records; BatchSize is 10", maxBatch)
	}

	// Stop cancels the pollers' 20 s long polls at once.
	began := time.Now()
	r.Stop()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Stop took %s: the long polls were not cancelled", took)
	}
}

func TestSQSWithoutReportBatchItemFailures(t *testing.T) {
	t.Parallel()
	c := sqsClient()

	t.Run("partial response ignored", func(t *testing.T) {
		t.Parallel()
		// Without ReportBatchItemFailures Lambda ignores batchItemFailures: a successful
		// invocation deletes the whole batch, the "fail" message included.
		q := makeQueues(t, c)
		ids := send(t, c, q.url, "fail-x", "good")
		r := newRunner(t)
		var out lines
		fn := start(t, r, Function{Timeout: time.Second, Output: &out})
		if err := fn.MapSQS(context.Background(), SQSMapping{QueueURL: q.url}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "both messages processed and the queue empty", func() bool {
			cnt := seen(out.records())
			return len(cnt[ids[0]]) > 0 && len(cnt[ids[1]]) > 0 && depth(t, c, q.url) == 0
		})
		if n := depth(t, c, q.dlqURL); n != 0 {
			t.Errorf("DLQ holds %d messages; the fail message should have been deleted", n)
		}
		if counts := seen(out.records())[ids[0]]; !slices.Equal(counts, []string{"1"}) {
			t.Errorf("fail message seen with receive counts %v, want once", counts)
		}
	})

	t.Run("function error", func(t *testing.T) {
		t.Parallel()
		// A function error fails the whole batch: nothing is deleted, every message of
		// the batch comes back.
		q := makeQueues(t, c)
		ids := send(t, c, q.url, "error", "good-1", "good-2")
		r := newRunner(t)
		var out lines
		fn := start(t, r, Function{Timeout: time.Second, Output: &out})
		// A window so the three messages (already queued) form one batch.
		if err := fn.MapSQS(context.Background(), SQSMapping{QueueURL: q.url, BatchingWindow: 500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the error message in the DLQ and the queue empty", func() bool {
			return depth(t, c, q.dlqURL) > 0 && depth(t, c, q.url) == 0
		})
		// Whatever the batches were, each batch-mate of the first failing batch was
		// received again.
		recs := out.records()
		var failed string
		for _, rec := range recs {
			if rec.MessageID == ids[0] && rec.ReceiveCount == "1" {
				failed = rec.RequestID
			}
		}
		if failed == "" {
			t.Fatalf("the error message was never seen on its first receive: %+v", recs)
		}
		counts := seen(recs)
		mates := 0
		for _, rec := range recs {
			if rec.RequestID != failed {
				continue
			}
			mates++
			if !slices.Contains(counts[rec.MessageID], "2") {
				t.Errorf("message %s of the failed batch was not received again: counts %v", rec.MessageID, counts[rec.MessageID])
			}
		}
		if mates != 3 {
			t.Errorf("the failing batch held %d messages, want all 3 (batching window)", mates)
		}
		if got := drain(t, c, q.dlqURL, 3); !slices.Contains(got, "error") {
			t.Errorf("DLQ holds %q, want the error message", got)
		}
		if st := fn.Stats(); st.Errors < 2 {
			t.Errorf("Stats = %+v; want a function error per receive of the error message", st)
		}
	})
}

func TestSQSCrash(t *testing.T) {
	t.Parallel()
	c := sqsClient()
	q := makeQueues(t, c)
	// Batches of one, so the crash takes only itself down: Lambda retries a crashed
	// batch whole, batch-mates included. One environment at most, so that every
	// invocation after a crash proves a restart.
	ids := send(t, c, q.url, "crash", "good-1", "good-2", "good-3", "good-4", "good-5")
	r := newRunner(t)
	var out lines
	fn := start(t, r, Function{Concurrency: 1, Timeout: time.Second, Output: &out})
	if err := fn.MapSQS(context.Background(), SQSMapping{QueueURL: q.url, BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the crash message in the DLQ and the queue empty", func() bool {
		return depth(t, c, q.url) == 0 && depth(t, c, q.dlqURL) == 1
	})
	if got := drain(t, c, q.dlqURL, 1); !slices.Equal(got, []string{"crash"}) {
		t.Errorf("DLQ holds %q, want only the crash message", got)
	}
	counts := seen(out.records())
	for _, id := range ids[1:] {
		if len(counts[id]) == 0 {
			t.Errorf("good message %s never processed", id)
		}
	}
	if !slices.Equal(counts[ids[0]], []string{"1", "2"}) {
		t.Errorf("crash message seen with receive counts %v, want 1 then 2", counts[ids[0]])
	}
	st := fn.Stats()
	// The first crash came first (it was sent first and the only environment took it),
	// and everything after it needed a fresh environment.
	if st.Crashes != 2 || st.ColdStarts < 2 {
		t.Errorf("Stats = %+v; want 2 crashes and the environment restarted after them", st)
	}
}

func TestMapSQSValidation(t *testing.T) {
	t.Parallel()
	c := sqsClient()
	q := makeQueues(t, c)
	r := newRunner(t)
	fn := start(t, r, Function{Timeout: 30 * time.Second})
	for _, tc := range []struct {
		m    SQSMapping
		want string
	}{
		{SQSMapping{QueueURL: q.url}, "visibility timeout 1s is less than the function timeout 30s"},
		{SQSMapping{QueueURL: q.url, BatchSize: 11}, "BatchSize 11 out of range"},
		{SQSMapping{}, "QueueURL is required"},
		{SQSMapping{QueueURL: q.url + "-missing"}, "queue " + q.url + "-missing"},
	} {
		if err := fn.MapSQS(context.Background(), tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MapSQS(%+v) = %v; want an error containing %q", tc.m, err, tc.want)
		}
	}
	fast := start(t, r, Function{Name: "fast", Timeout: time.Second})
	if err := fast.MapSQS(context.Background(), SQSMapping{QueueURL: q.url, QueueARN: q.dlqARN}); err == nil || !strings.Contains(err.Error(), "has ARN "+q.arn) {
		t.Errorf("MapSQS with the wrong ARN = %v; want a mismatch error", err)
	}
}

func TestBatchItemFailuresRules(t *testing.T) {
	t.Parallel()
	msgs := []types.Message{{MessageId: aws.String("a")}, {MessageId: aws.String("b")}}
	for _, c := range []struct {
		resp   string
		failed []string
		ok     bool
	}{
		{``, nil, true},
		{`null`, nil, true},
		{`{}`, nil, true},
		{`{"batchItemFailures":null}`, nil, true},
		{`{"batchItemFailures":[]}`, nil, true},
		{`{"batchItemFailures":[{"itemIdentifier":"b"}]}`, []string{"b"}, true},
		{`{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}`, []string{"a", "b"}, true},
		{`not json`, nil, false},
		{`"a string"`, nil, false},
		{`{"batchItemFailures":[{"itemIdentifier":""}]}`, nil, false},
		{`{"batchItemFailures":[{"itemIdentifier":null}]}`, nil, false},
		{`{"batchItemFailures":[{"itemId":"a"}]}`, nil, false},
		{`{"batchItemFailures":[{"itemIdentifier":"zzz"}]}`, nil, false},
	} {
		failed, ok := batchItemFailures([]byte(c.resp), msgs)
		var got []string
		for id := range failed {
			got = append(got, id)
		}
		slices.Sort(got)
		if ok != c.ok || !slices.Equal(got, c.failed) {
			t.Errorf("batchItemFailures(%s) = %v, %v; want %v, %v", c.resp, got, ok, c.failed, c.ok)
		}
	}
}

func TestSQSEventShape(t *testing.T) {
	t.Parallel()
	ev := sqsEvent([]types.Message{{
		MessageId:     aws.String("059f36b4-87a3-44ab-83d2-661975830a7d"),
		ReceiptHandle: aws.String("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a"),
		Body:          aws.String("test"),
		MD5OfBody:     aws.String("098f6bcd4621d373cade4e832627b4f6"),
		Attributes: map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
			"SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"},
		MessageAttributes: map[string]types.MessageAttributeValue{
			"k": {DataType: aws.String("String"), StringValue: aws.String("v")},
		},
	}}, "arn:aws:sqs:us-east-2:123456789012:my-queue", "us-east-2")
	got, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// Lambda's documented example event for SQS, with a message attribute.
	want := `{"Records":[{"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",` +
		`"body":"test","md5OfBody":"098f6bcd4621d373cade4e832627b4f6","md5OfMessageAttributes":"",` +
		`"attributes":{"ApproximateFirstReceiveTimestamp":"1545082649185","ApproximateReceiveCount":"1","SenderId":"AIDAIENQZJOLO23YVJ4VO","SentTimestamp":"1545082649183"},` +
		`"messageAttributes":{"k":{"stringValue":"v","stringListValues":[],"binaryListValues":[],"dataType":"String"}},` +
		`"eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:my-queue","eventSource":"aws:sqs","awsRegion":"us-east-2"}]}`
	if string(got) != want {
		t.Errorf("event:\n got %s\nwant %s", got, want)
	}
	var back events.SQSEvent
	if err := json.Unmarshal(got, &back); err != nil || back.Records[0].Body != "test" {
		t.Errorf("the event does not decode as events.SQSEvent: %v", err)
	}
}

// TestSQSVisibilityChangedByTheFunction: a function that hides a failed message itself
// (ChangeMessageVisibility, as sessionha's functions do to retry on a schedule) gets it
// back no sooner than it asked, not after the queue's 1 s visibility timeout: the runner
// neither deletes it nor resets its visibility.
func TestSQSVisibilityChangedByTheFunction(t *testing.T) {
	t.Parallel()
	c := sqsClient()
	q := makeQueues(t, c)
	ids := send(t, c, q.url, "hide:4")
	r := newRunner(t)
	var out lines
	fn := start(t, r, Function{Timeout: time.Second, Output: &out, Env: map[string]string{
		"ECHOFN_QUEUE_URL": q.url, "AWS_ENDPOINT_URL": fq.Endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
	}})
	if err := fn.MapSQS(context.Background(), SQSMapping{QueueURL: q.url, ReportBatchItemFailures: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the message received twice, then in the DLQ", func() bool {
		return depth(t, c, q.dlqURL) == 1 && depth(t, c, q.url) == 0
	})
	var receives []time.Time
	hidden := 0
	for _, s := range out.snapshot() {
		var l struct {
			Time      time.Time
			Msg       string
			MessageID string
			OK        bool
		}
		if json.Unmarshal([]byte(s), &l) != nil || l.MessageID != ids[0] {
			continue
		}
		switch l.Msg {
		case "record":
			receives = append(receives, l.Time)
		case "hidden":
			if !l.OK {
				t.Fatalf("the function could not hide the message: %s", s)
			}
			hidden++
		}
	}
	if len(receives) != 2 || hidden != 2 {
		t.Fatalf("received %d times, hidden %d times; want 2 and 2", len(receives), hidden)
	}
	// Hidden for 4 s from a moment after its first receive began.
	if gap := receives[1].Sub(receives[0]); gap < 3900*time.Millisecond {
		t.Errorf("received again %s after the first receive; the function hid it for 4 s", gap)
	}
}
