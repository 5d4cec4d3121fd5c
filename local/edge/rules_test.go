package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// fakeClock is the edge's clock in rules tests: it moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ruled is an edge in front of the shared fauxqs with the AWS rules on, on a fake
// clock, and real SDK clients that reach fauxqs only through it.
type ruled struct {
	g     *Gateway
	s     *Server
	clock *fakeClock
	sns   *sns.Client
	sqs   *sqs.Client
}

func newRuled(t *testing.T) *ruled {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	g, err := NewGateway(Options{
		Routes:          []Route{{Service: "sns", URL: fauxqsEndpoint}, {Service: "sqs", URL: fauxqsEndpoint}},
		EnforceAWSRules: true,
		Now:             clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	return &ruled{g: g, s: s, clock: clock,
		sns: sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(s.URL()); o.RetryMaxAttempts = 1 }),
		sqs: sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(s.URL()); o.RetryMaxAttempts = 1 }),
	}
}

func (e *ruled) createQueue(t *testing.T, name string, attrs map[string]string) string {
	t.Helper()
	out, err := e.sqs.CreateQueue(ctxT(t), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

func (e *ruled) send(t *testing.T, q, body string) {
	t.Helper()
	if _, err := e.sqs.SendMessage(ctxT(t), &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String(body)}); err != nil {
		t.Fatalf("SendMessage %q: %v", body, err)
	}
}

// drain receives (and deletes) through e until a receive comes back empty, and
// returns the bodies in order of arrival.
func (e *ruled) drain(t *testing.T, q string) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := e.sqs.ReceiveMessage(ctxT(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := e.sqs.DeleteMessage(ctxT(t), &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
}

// apiError checks that err is an AWS API error with HTTP status, code and message.
func apiError(t *testing.T, what string, err error, status int, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	if statusOf(err) != status || ae.ErrorCode() != code || ae.ErrorMessage() != msg {
		t.Fatalf("%s: got HTTP %d %q %q, want HTTP %d %q %q", what, statusOf(err), ae.ErrorCode(), ae.ErrorMessage(), status, code, msg)
	}
}

func TestRuleQueueDeletedRecently(t *testing.T) {
	e := newRuled(t)
	name := uniq("edge-reuse")
	q := e.createQueue(t, name, nil)
	if _, err := e.sqs.DeleteQueue(ctxT(t), &sqs.DeleteQueueInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	_, err := e.sqs.CreateQueue(ctxT(t), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	var typed *sqstypes.QueueDeletedRecently
	if !errors.As(err, &typed) {
		t.Fatalf("CreateQueue right after DeleteQueue: got %v, want *types.QueueDeletedRecently", err)
	}
	apiError(t, "CreateQueue right after DeleteQueue", err, http.StatusBadRequest,
		"AWS.SimpleQueueService.QueueDeletedRecently",
		"You must wait 60 seconds after deleting a queue before you can create another with the same name.")

	// Other names are free; so is the same name in another region.
	e.createQueue(t, name+"-other", nil)
	eu := sqs.NewFromConfig(aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.s.URL()) })
	euQ, err := eu.CreateQueue(ctxT(t), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("CreateQueue of the name in eu-west-1, deleted in us-east-1: %v", err)
	}
	if _, err := eu.DeleteQueue(ctxT(t), &sqs.DeleteQueueInput{QueueUrl: euQ.QueueUrl}); err != nil {
		t.Fatalf("DeleteQueue in eu-west-1: %v", err)
	}

	e.clock.Advance(59 * time.Second)
	if _, err := e.sqs.CreateQueue(ctxT(t), &sqs.CreateQueueInput{QueueName: aws.String(name)}); !errors.As(err, &typed) {
		t.Fatalf("CreateQueue 59 s after DeleteQueue: got %v, want QueueDeletedRecently", err)
	}
	e.clock.Advance(time.Second)
	e.createQueue(t, name, nil) // 60 s: allowed

	// A failed DeleteQueue (no such queue) holds no name back.
	ghost := uniq("edge-ghost")
	_, err = e.sqs.DeleteQueue(ctxT(t), &sqs.DeleteQueueInput{QueueUrl: aws.String(strings.Replace(q, name, ghost, 1))})
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("DeleteQueue of a queue that does not exist: got %v, want QueueDoesNotExist", err)
	}
	e.createQueue(t, ghost, nil)

	// Switched off, the edge lets a name be reused at once, as fauxqs does.
	e.g.EnforceAWSRules(false)
	q2 := e.createQueue(t, uniq("edge-reuse-off"), nil)
	if _, err := e.sqs.DeleteQueue(ctxT(t), &sqs.DeleteQueueInput{QueueUrl: aws.String(q2)}); err != nil {
		t.Fatal(err)
	}
	e.createQueue(t, queueName(q2), nil)
}

// Off by default: New's gateway (the shared one) behaves as fauxqs does.
func TestRulesOffByDefault(t *testing.T) {
	ctx := ctxT(t)
	name := uniq("edge-off")
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := sqsc.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: q.QueueUrl}); err != nil {
			t.Fatalf("PurgeQueue twice with the rules off: %v", err)
		}
	}
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("after purge")}); err != nil {
		t.Fatal(err)
	}
	out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 5})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("ReceiveMessage after a purge with the rules off: %v, %v; want the message sent after it", out, err)
	}
	if _, err := sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	if _, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("CreateQueue right after DeleteQueue with the rules off: %v", err)
	}
	// A batch over SNS's total limit: fauxqs takes it.
	topic := createTopic(t)
	_, err = snsc.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String(topic), PublishBatchRequestEntries: []snstypes.PublishBatchRequestEntry{
		{Id: aws.String("a"), Message: aws.String(strings.Repeat("a", 140_000))},
		{Id: aws.String("b"), Message: aws.String(strings.Repeat("b", 140_000))},
	}})
	if err != nil {
		t.Fatalf("PublishBatch of 280,000 bytes with the rules off: %v", err)
	}
}

func TestRulePurgeInterval(t *testing.T) {
	e := newRuled(t)
	name := uniq("edge-purge")
	q := e.createQueue(t, name, nil)
	purge := func() error {
		_, err := e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(q)})
		return err
	}
	if err := purge(); err != nil {
		t.Fatalf("first PurgeQueue: %v", err)
	}
	err := purge()
	var typed *sqstypes.PurgeQueueInProgress
	if !errors.As(err, &typed) {
		t.Fatalf("second PurgeQueue at once: got %v, want *types.PurgeQueueInProgress", err)
	}
	apiError(t, "second PurgeQueue", err, http.StatusBadRequest, "AWS.SimpleQueueService.PurgeQueueInProgress",
		"Only one PurgeQueue operation on "+name+" is allowed every 60 seconds.")
	e.clock.Advance(59 * time.Second)
	if err := purge(); !errors.As(err, &typed) {
		t.Fatalf("PurgeQueue 59 s later: got %v, want PurgeQueueInProgress", err)
	}
	e.clock.Advance(time.Second)
	if err := purge(); err != nil {
		t.Fatalf("PurgeQueue 60 s later: %v", err)
	}

	// A purge that fails holds nothing back.
	ghost := uniq("edge-purge-ghost")
	ghostURL := strings.Replace(q, name, ghost, 1)
	_, err = e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(ghostURL)})
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("PurgeQueue of a queue that does not exist: got %v, want QueueDoesNotExist", err)
	}
	e.createQueue(t, ghost, nil)
	if _, err := e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(ghostURL)}); err != nil {
		t.Fatalf("PurgeQueue after a failed one: %v", err)
	}
}

// Messages sent in the 60 s after a purge disappear, whether received during the
// window or after it; messages sent after it are received; and the taken ones are
// deleted in fauxqs, not just hidden.
func TestRulePurgeWindowSendMessage(t *testing.T) {
	e := newRuled(t)
	q := e.createQueue(t, uniq("edge-window"), nil)
	e.send(t, q, "before")
	if _, err := e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatal(err)
	}
	e.send(t, q, "in-window-1")
	if got := e.drain(t, q); len(got) != 0 {
		t.Fatalf("received %q in the purge window, want nothing", got)
	}
	e.clock.Advance(30 * time.Second)
	e.send(t, q, "in-window-2") // not received while the window is open
	e.clock.Advance(31 * time.Second)
	e.send(t, q, "after-window")
	if got := e.drain(t, q); !slices.Equal(got, []string{"after-window"}) {
		t.Fatalf("received %q after the window, want only [after-window]", got)
	}

	// fauxqs holds nothing more: the taken messages were deleted, not left invisible.
	direct := sqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(fauxqsEndpoint) })
	attrs, err := direct.GetQueueAttributes(ctxT(t), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
		if attrs.Attributes[a] != "0" {
			t.Errorf("fauxqs %s = %s, want 0 (attributes: %v)", a, attrs.Attributes[a], attrs.Attributes)
		}
	}
}

// SNS fan-out happens inside fauxqs, never crossing the edge: its messages in the
// window disappear all the same.
func TestRulePurgeWindowFanOut(t *testing.T) {
	e := newRuled(t)
	ctx := ctxT(t)
	topic, err := e.sns.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(uniq("edge-window-topic"))})
	if err != nil {
		t.Fatal(err)
	}
	q := e.createQueue(t, uniq("edge-window-fanout"), nil)
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sns.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(msg string) {
		t.Helper()
		if _, err := e.sns.Publish(ctx, &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String(msg)}); err != nil {
			t.Fatalf("Publish %q: %v", msg, err)
		}
	}
	publish("before")
	if _, err := e.sqs.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatal(err)
	}
	publish("in-window-1")
	if got := e.drain(t, q); len(got) != 0 {
		t.Fatalf("received %q in the purge window, want nothing", got)
	}
	publish("in-window-2")
	e.clock.Advance(PurgeWindow + time.Second)
	publish("after-window")
	if got := e.drain(t, q); !slices.Equal(got, []string{"after-window"}) {
		t.Fatalf("received %q after the window, want only [after-window]", got)
	}
}

// A client that did not ask for attributes gets the answer shaped as without the
// rules; one that asked for some gets exactly those.
func TestRulePurgeWindowAnswerShape(t *testing.T) {
	e := newRuled(t)
	withWindow := e.createQueue(t, uniq("edge-shape"), nil)
	if _, err := e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(withWindow)}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(PurgeWindow)
	plain := e.createQueue(t, uniq("edge-shape-plain"), nil)

	// Raw answers: the keys of each message, through the ruled edge (window) and the
	// shared edge without rules (no window).
	keys := func(base, q string, req map[string]any) [][]string {
		t.Helper()
		req["QueueUrl"] = q
		b, _ := json.Marshal(req)
		code, body := rawRequest(t, "POST", base+"/", map[string]string{
			"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ReceiveMessage",
			"Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00",
		}, string(b))
		if code != http.StatusOK {
			t.Fatalf("ReceiveMessage: %d %s", code, body)
		}
		var out struct{ Messages []map[string]json.RawMessage }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("ReceiveMessage answer %s: %v", body, err)
		}
		var ks [][]string
		for _, m := range out.Messages {
			k := slices.Sorted(maps.Keys(m))
			if a, ok := m["Attributes"]; ok {
				var attrs map[string]string
				_ = json.Unmarshal(a, &attrs)
				k = append(k, slices.Sorted(maps.Keys(attrs))...)
			}
			ks = append(ks, k)
		}
		return ks
	}
	for _, tc := range []struct {
		name string
		req  map[string]any
	}{
		{"nothing asked", map[string]any{}},
		{"message attributes", map[string]any{"MessageAttributeNames": []string{"All"}}},
		{"one system attribute", map[string]any{"MessageSystemAttributeNames": []string{"ApproximateReceiveCount"}}},
		{"sent timestamp", map[string]any{"AttributeNames": []string{"SentTimestamp"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, q := range []string{withWindow, plain} {
				if _, err := e.sqs.SendMessage(ctxT(t), &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String("shape"),
					MessageAttributes: map[string]sqstypes.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}}); err != nil {
					t.Fatal(err)
				}
			}
			got := keys(e.s.URL(), withWindow, maps.Clone(tc.req))
			want := keys(srv.URL(), plain, maps.Clone(tc.req))
			if len(got) != 1 || len(want) != 1 || !slices.Equal(got[0], want[0]) {
				t.Fatalf("message keys through the rules %v, without %v: want one message shaped alike", got, want)
			}
		})
	}

	// Through the SDK: no attributes asked, none given.
	e.send(t, withWindow, "sdk")
	out, err := e.sqs.ReceiveMessage(ctxT(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(withWindow), WaitTimeSeconds: 5})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("ReceiveMessage: %v, %v", out, err)
	}
	if a := out.Messages[0].Attributes; len(a) != 0 {
		t.Errorf("Attributes = %v, want none (none were asked for)", a)
	}
}

func TestRuleMessageSizes(t *testing.T) {
	e := newRuled(t)
	ctx := ctxT(t)
	topic, err := e.sns.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(uniq("edge-size"))})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(msg string, attrs map[string]snstypes.MessageAttributeValue) error {
		_, err := e.sns.Publish(ctx, &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String(msg), MessageAttributes: attrs})
		return err
	}
	var invalid *snstypes.InvalidParameterException
	if err := publish(strings.Repeat("x", SNSMaxMessageSize), nil); err != nil {
		t.Fatalf("Publish of exactly %d bytes: %v", SNSMaxMessageSize, err)
	}
	err = publish(strings.Repeat("x", SNSMaxMessageSize+1), nil)
	if !errors.As(err, &invalid) {
		t.Fatalf("Publish of %d bytes: got %v, want *types.InvalidParameterException", SNSMaxMessageSize+1, err)
	}
	apiError(t, "Publish too long", err, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message too long")
	// Attributes count: name, type and value.
	str := map[string]snstypes.MessageAttributeValue{"key": {DataType: aws.String("String"), StringValue: aws.String("value")}}
	fits := SNSMaxMessageSize - len("key") - len("String") - len("value")
	if err := publish(strings.Repeat("x", fits), str); err != nil {
		t.Fatalf("Publish of %d bytes with an attribute (exactly the limit): %v", fits, err)
	}
	apiError(t, "Publish one byte over the limit with its attribute", publish(strings.Repeat("x", fits+1), str),
		http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message too long")
	// A binary value counts by its bytes, not its base64 (fauxqs counts the base64, and
	// so refuses some messages AWS takes: the edge's own refusal is checked here, by its
	// message, and the count in TestSDKWireFormats).
	bin := map[string]snstypes.MessageAttributeValue{"blob": {DataType: aws.String("Binary"), BinaryValue: make([]byte, 300)}}
	apiError(t, "Publish one byte over the limit with a binary attribute",
		publish(strings.Repeat("x", SNSMaxMessageSize-len("blob")-len("Binary")-300+1), bin),
		http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message too long")

	batch := func(sizes ...int) error {
		var entries []snstypes.PublishBatchRequestEntry
		for i, n := range sizes {
			entries = append(entries, snstypes.PublishBatchRequestEntry{Id: aws.String(fmt.Sprint("e", i)), Message: aws.String(strings.Repeat("b", n)),
				MessageAttributes: map[string]snstypes.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}})
		}
		out, err := e.sns.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: topic.TopicArn, PublishBatchRequestEntries: entries})
		if err == nil && len(out.Failed) > 0 {
			return fmt.Errorf("%d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		return err
	}
	if err := batch(131_000, 131_000); err != nil { // 262,000 + 2 × "k" "String" "v"
		t.Fatalf("PublishBatch within the limit: %v", err)
	}
	err = batch(140_000, 140_000)
	var batchTooLong *snstypes.BatchRequestTooLongException
	if !errors.As(err, &batchTooLong) {
		t.Fatalf("PublishBatch of 280,000 bytes: got %v, want *types.BatchRequestTooLongException", err)
	}
	apiError(t, "PublishBatch too long", err, http.StatusBadRequest, "BatchRequestTooLong", "The length of all the messages put together is more than the limit.")

	// SQS: the queue's MaximumMessageSize, AWS's default 1 MiB when not set.
	q := e.createQueue(t, uniq("edge-size"), nil)
	sendN := func(q string, n int) error {
		_, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q), MessageBody: aws.String(strings.Repeat("s", n))})
		return err
	}
	if err := sendN(q, SQSMaxMessageSize); err != nil {
		t.Fatalf("SendMessage of %d bytes: %v", SQSMaxMessageSize, err)
	}
	apiError(t, "SendMessage too long", sendN(q, SQSMaxMessageSize+1), http.StatusBadRequest, "InvalidParameterValue",
		"One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.")
	small := e.createQueue(t, uniq("edge-size-small"), map[string]string{"MaximumMessageSize": "1024"})
	apiError(t, "SendMessage over the queue's MaximumMessageSize", sendN(small, 1025), http.StatusBadRequest, "InvalidParameterValue",
		"One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.")
	if _, err := e.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(small),
		Attributes: map[string]string{"MaximumMessageSize": "2048"}}); err != nil {
		t.Fatal(err)
	}
	if err := sendN(small, 1025); err != nil {
		t.Fatalf("SendMessage of 1025 bytes after MaximumMessageSize became 2048: %v", err)
	}
	_, err = e.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q), Entries: []sqstypes.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String(strings.Repeat("a", 600_000))},
		{Id: aws.String("b"), MessageBody: aws.String(strings.Repeat("b", 600_000))},
	}})
	var sqsBatchTooLong *sqstypes.BatchRequestTooLong
	if !errors.As(err, &sqsBatchTooLong) {
		t.Fatalf("SendMessageBatch of 1,200,000 bytes: got %v, want *types.BatchRequestTooLong", err)
	}
	apiError(t, "SendMessageBatch too long", err, http.StatusBadRequest, "AWS.SimpleQueueService.BatchRequestTooLong", "Batch requested message too long.")
	out, err := e.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q), Entries: []sqstypes.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String(strings.Repeat("a", 500_000))},
		{Id: aws.String("b"), MessageBody: aws.String(strings.Repeat("b", 500_000))},
	}})
	if err != nil || len(out.Failed) != 0 {
		t.Fatalf("SendMessageBatch of 1,000,000 bytes: %v, %v", out, err)
	}
}

// What each SDK sends, which the rules parse: SQS speaks AWS JSON 1.0 (X-Amz-Target
// AmazonSQS.*), SNS the query protocol (a form with Action=...).
func TestSDKWireFormats(t *testing.T) {
	type seen struct {
		contentType, target string
		body                []byte
	}
	var (
		mu  sync.Mutex
		got []seen
	)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Header.Get("Content-Type"), r.Header.Get("X-Amz-Target"), b})
		mu.Unlock()
		http.Error(w, "recorded", http.StatusTeapot)
	}))
	defer rec.Close()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	sq := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(rec.URL); o.RetryMaxAttempts = 1 })
	sn := sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(rec.URL); o.RetryMaxAttempts = 1 })
	ctx := ctxT(t)
	_, _ = sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String("http://q/000000000000/q"), MessageBody: aws.String("body"),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{"b": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2, 3}}}})
	_, _ = sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String("http://q/000000000000/q"),
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"SentTimestamp"}})
	_, _ = sn.Publish(ctx, &sns.PublishInput{TopicArn: aws.String("arn:t"), Message: aws.String("m"),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{"s": {DataType: aws.String("String"), StringValue: aws.String("v")},
			"b": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2, 3}}}})
	_, _ = sn.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String("arn:t"), PublishBatchRequestEntries: []snstypes.PublishBatchRequestEntry{
		{Id: aws.String("e"), Message: aws.String("m1"), MessageAttributes: map[string]snstypes.MessageAttributeValue{"s": {DataType: aws.String("String"), StringValue: aws.String("v")}}}}})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("recorded %d requests, want 4", len(got))
	}

	// SQS: JSON, parsed by the same struct as the rules use.
	for i, op := range []string{"SendMessage", "ReceiveMessage"} {
		if got[i].contentType != "application/x-amz-json-1.0" || got[i].target != "AmazonSQS."+op {
			t.Errorf("SQS %s sent as %q, target %q; want application/x-amz-json-1.0, AmazonSQS.%s", op, got[i].contentType, got[i].target, op)
		}
	}
	var send, recv sqsInput
	if err := json.Unmarshal(got[0].body, &send); err != nil || send.MessageBody != "body" || send.QueueURL == "" ||
		send.MessageAttributes["b"].DataType != "Binary" || !slices.Equal(send.MessageAttributes["b"].BinaryValue, []byte{1, 2, 3}) {
		t.Errorf("SendMessage body %s parsed as %+v, %v", got[0].body, send, err)
	}
	if size := sqsMessageSize(send.MessageBody, send.MessageAttributes); size != len("body")+len("b")+len("Binary")+3 {
		t.Errorf("sqsMessageSize = %d", size)
	}
	if err := json.Unmarshal(got[1].body, &recv); err != nil || !slices.Equal(recv.MessageSystemAttributeNames, []string{"SentTimestamp"}) {
		t.Errorf("ReceiveMessage body %s parsed as %+v, %v", got[1].body, recv, err)
	}

	// SNS: a form with Action.
	for i, action := range []string{"Publish", "PublishBatch"} {
		s := got[2+i]
		form, err := url.ParseQuery(string(s.body))
		if !strings.HasPrefix(s.contentType, "application/x-www-form-urlencoded") || s.target != "" || err != nil || form.Get("Action") != action {
			t.Errorf("SNS %s sent as %q, target %q, body %s; want a form with Action=%s", action, s.contentType, s.target, s.body, action)
		}
	}
	publishForm, _ := url.ParseQuery(string(got[2].body))
	if n, want := snsSize(publishForm), len("m")+len("s")+len("String")+len("v")+len("b")+len("Binary")+3; n != want {
		t.Errorf("snsSize(Publish) = %d, want %d (form %v)", n, want, publishForm)
	}
	batchForm, _ := url.ParseQuery(string(got[3].body))
	if n, want := snsSize(batchForm), len("m1")+len("s")+len("String")+len("v"); n != want {
		t.Errorf("snsSize(PublishBatch) = %d, want %d (form %v)", n, want, batchForm)
	}
}

// A long poll whose messages were all taken polls on for the rest of its wait, as
// it would on AWS, where the taken messages were never there: it returns a message
// that arrives later rather than an empty answer.
func TestRulePurgeWindowLongPoll(t *testing.T) {
	e := newRuled(t)
	q := e.createQueue(t, uniq("edge-window-poll"), nil)
	if _, err := e.sqs.PurgeQueue(ctxT(t), &sqs.PurgeQueueInput{QueueUrl: aws.String(q)}); err != nil {
		t.Fatal(err)
	}
	e.send(t, q, "in-window")
	e.clock.Advance(PurgeWindow + time.Second)

	type result struct {
		bodies []string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		out, err := e.sqs.ReceiveMessage(ctxT(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 20})
		var r result
		r.err = err
		if out != nil {
			for _, m := range out.Messages {
				r.bodies = append(r.bodies, aws.ToString(m.Body))
			}
		}
		done <- r
	}()
	// Once the poll has taken the window's message (fauxqs holds none), send another.
	direct := sqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(fauxqsEndpoint) })
	localtestEventually(t, "the in-window message taken by the poll", func() (bool, string) {
		a, err := direct.GetQueueAttributes(ctxT(t), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			return false, err.Error()
		}
		return a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0",
			fmt.Sprint(a.Attributes)
	})
	select {
	case r := <-done:
		t.Fatalf("the poll returned %q, %v before a message it may keep arrived", r.bodies, r.err)
	default:
	}
	e.send(t, q, "later")
	select {
	case r := <-done:
		if r.err != nil || !slices.Equal(r.bodies, []string{"later"}) {
			t.Fatalf("long poll returned %q, %v; want [later]", r.bodies, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("long poll did not return the later message")
	}
}

// localtestEventually polls cond as local/localtest.Eventually does (that package
// cannot be imported here: it imports the site, which imports the edge).
func localtestEventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 45s; last: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// On the real clock a window ends exactly PurgeWindow after its purge, to the
// millisecond, whenever the edge notices; unless a request that arrived in the window
// completed after that, in which case what it sent was sent in the window.
func TestPurgeWindowEndRealClock(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lastDone time.Duration // since the purge
		wantEnd  time.Duration // since the purge
	}{
		{"no request across the end", 40 * time.Second, PurgeWindow},
		{"a request completed after the end", 65 * time.Second, 65 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ru := newRules(time.Now)
			purge := time.Now().Add(-70 * time.Second)
			key := queueKey{"us-east-1", "q"}
			ru.addWindow(ru.queue(key), purge, purge)
			ru.lastDone = purge.Add(tc.lastDone)
			ru.observe()
			end := purge.Add(tc.wantEnd)
			w := ru.queues[key].windows[0]
			if w.realEnd.Before(end) || w.realEnd.Sub(end) > 2*time.Millisecond || len(ru.open) != 0 {
				t.Fatalf("window end placed %s after the purge, want %s (to the ms); open windows %d", w.realEnd.Sub(purge), tc.wantEnd, len(ru.open))
			}
			for _, c := range []struct {
				sent time.Duration
				want bool
			}{
				{-time.Millisecond, false},
				{0, true},
				{tc.wantEnd - time.Millisecond, true},
				{tc.wantEnd + 2*time.Millisecond, false},
				{69 * time.Second, false},
			} {
				if got := ru.taken(key, purge.Add(c.sent).UnixMilli()); got != c.want {
					t.Errorf("message sent %s after the purge: taken %v, want %v", c.sent, got, c.want)
				}
			}
		})
	}
}
