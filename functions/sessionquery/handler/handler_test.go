package handler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/localtest"
)

var (
	db  *dynamodb.Client
	bus *sns.Client
	q   *sqs.Client
)

const table = "sessions"

// TestMain runs against DynamoDB Local and fauxqs: no mocks.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	var stopDB, stopBus func()
	var err error
	if db, stopDB, err = localtest.DynamoDB(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopDB()
	if bus, q, stopBus, err = localtest.Bus(ctx); err != nil {
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

// replyQueue makes an instance's reply queue: subscribed to topic with a filter on its id.
func replyQueue(t *testing.T, topic, instance string) string {
	t.Helper()
	ctx := context.Background()
	url, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reply-" + instance)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bus.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topic), Protocol: aws.String("sqs"), Endpoint: aws.String(attrs.Attributes["QueueArn"]),
		Attributes: map[string]string{"RawMessageDelivery": "true", "FilterPolicy": fmt.Sprintf(`{"requester":[%q]}`, instance)}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(url.QueueUrl)
}

func receive(t *testing.T, url string) []*events.Reply {
	t.Helper()
	var out []*events.Reply
	for {
		res, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Messages) == 0 {
			return out
		}
		for _, m := range res.Messages {
			r, err := events.DecodeReply([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			out = append(out, r)
		}
	}
}

func TestAnswers(t *testing.T) {
	ctx := context.Background()
	topic, err := bus.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("reply")})
	if err != nil {
		t.Fatal(err)
	}
	qa, qb := replyQueue(t, aws.ToString(topic.TopicArn), "auth-a"), replyQueue(t, aws.ToString(topic.TopicArn), "auth-b")
	tbl := &record.Table{DB: db, Name: table, Grace: time.Minute}
	now := time.Now().UnixMilli()
	put := func(kind record.OpKind, id string, attrs map[string][]byte) {
		op := record.Op{Kind: kind, Key: record.Key("default", events.HashID(id)), Version: record.Version(fmt.Sprintf("%016x", uint64(now)<<16), "w")}
		if kind != record.Destroy {
			op.Session = &record.Item{Principal: "alice", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: 3600, Attrs: attrs}
		}
		if kind == record.Delta {
			op.Set, op.Session.Attrs = attrs, nil
		}
		if _, _, err := tbl.Apply(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	put(record.Create, "live", map[string][]byte{"cart": []byte("book")})
	put(record.Create, "gone", nil)
	put(record.Destroy, "gone", nil)
	put(record.Delta, "orphan", map[string][]byte{"cart": []byte("x")})
	// Logged out in another region: its logout item has come by replication, its session
	// item here is still live (or another region's save won over the tombstone).
	put(record.Create, "elsewhere", map[string][]byte{"cart": []byte("y")})
	if _, err := tbl.WriteLogout(ctx, record.Op{Kind: record.Destroy, Key: record.Key("default", events.HashID("elsewhere")),
		Version: record.Version(fmt.Sprintf("%016x", uint64(now)<<16+1), "v")}); err != nil {
		t.Fatal(err)
	}

	logs := &bytes.Buffer{}
	src, dlq := queuePair(t)
	h, err := New(db, bus, q, Config{Table: table, ReplyTopicARN: aws.ToString(topic.TopicArn), QueueURL: src, DLQURL: dlq}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.metrics = io.Discard
	query := func(id, requester, req string) lambdaevents.SQSMessage {
		b, err := events.EncodeQuery(&events.Query{V: 1, Cluster: "default", ID: events.HashID(id), Requester: requester, RequestID: req, At: now})
		if err != nil {
			t.Fatal(err)
		}
		return lambdaevents.SQSMessage{MessageId: req, Body: string(b)}
	}
	resp, err := h.Handle(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{
		query("live", "auth-a", "r1"), query("gone", "auth-a", "r2"), query("never", "auth-a", "r3"),
		query("orphan", "auth-a", "r4"), {MessageId: "poison", Body: `{"v":1}`}, query("live", "auth-b", "r5"),
		query("elsewhere", "auth-a", "r6"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 0 {
		t.Errorf("failures %+v, want none: the poison query is dead-lettered at once", resp.BatchItemFailures)
	}
	dead, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead.Messages) != 1 || aws.ToString(dead.Messages[0].Body) != `{"v":1}` ||
		aws.ToString(dead.Messages[0].MessageAttributes[events.DeadLetterKind].StringValue) != "invalid" ||
		aws.ToString(dead.Messages[0].MessageAttributes[events.DeadLetterFunction].StringValue) != "sessionquery" {
		t.Errorf("query DLQ holds %+v, want the poison query with kind invalid", dead.Messages)
	}
	got := map[string]*events.Reply{}
	for _, r := range receive(t, qa) {
		if r.Requester != "auth-a" {
			t.Errorf("auth-a's queue got a reply for %s", r.Requester)
		}
		got[r.RequestID] = r
	}
	if r := got["r1"]; r == nil || r.Status != events.ReplyFound || string(r.Session.Attrs["cart"]) != "book" || r.Session.Principal != "alice" {
		t.Errorf("live session: %+v", r)
	}
	for req, want := range map[string]events.ReplyStatus{"r2": events.ReplyDestroyed, "r3": events.ReplyMissing, "r4": events.ReplyMissing,
		"r6": events.ReplyDestroyed} {
		if r := got[req]; r == nil || r.Status != want || r.Session != nil {
			t.Errorf("%s: %+v, want %s without a session", req, r, want)
		}
	}
	if rb := receive(t, qb); len(rb) != 1 || rb[0].RequestID != "r5" {
		t.Errorf("auth-b's queue: %+v, want exactly its own reply r5", rb)
	}
	if !strings.Contains(logs.String(), `"kind":"invalid"`) {
		t.Errorf("poison query not logged with its kind:\n%s", logs)
	}
}

// queuePair makes a query queue and its DLQ for one test.
func queuePair(t *testing.T) (src, dlq string) {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "-") + fmt.Sprint(time.Now().UnixNano())
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

// TestStaleAndFailedQueries: a query older than MaxAge is dropped, not answered (its
// client has stopped waiting); one whose read fails comes back within seconds, while
// its client may still wait, and is not dead-lettered.
func TestStaleAndFailedQueries(t *testing.T) {
	ctx := context.Background()
	topic, err := bus.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("reply-stale")})
	if err != nil {
		t.Fatal(err)
	}
	replies := replyQueue(t, aws.ToString(topic.TopicArn), "auth-stale")
	src, dlq := queuePair(t)
	down := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: db.Options().Credentials, RetryMaxAttempts: 1})
	logs := &bytes.Buffer{}
	metrics := &bytes.Buffer{}
	cfg := Config{Table: table, ReplyTopicARN: aws.ToString(topic.TopicArn), QueueURL: src, DLQURL: dlq, MaxAge: 10 * time.Second}
	h, err := New(down, bus, q, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.metrics = metrics
	now := time.Now()
	body := func(req string) string {
		b, err := events.EncodeQuery(&events.Query{V: 1, Cluster: "default", ID: events.HashID("some-session"), Requester: "auth-stale", RequestID: req, At: now.UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// A fresh query, through the real queue (its receipt handle is needed to hide it).
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(src), MessageBody: aws.String(body("fresh"))}); err != nil {
		t.Fatal(err)
	}
	got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(src), WaitTimeSeconds: 1, VisibilityTimeout: 60,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil || len(got.Messages) != 1 {
		t.Fatalf("receive the fresh query: %v %v", got, err)
	}
	m := got.Messages[0]
	fresh := lambdaevents.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body), Attributes: m.Attributes}
	stale := lambdaevents.SQSMessage{MessageId: "stale", Body: body("stale"),
		Attributes: map[string]string{"SentTimestamp": fmt.Sprint(now.Add(-11 * time.Second).UnixMilli()), "ApproximateReceiveCount": "3"}}

	resp, err := h.Handle(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{fresh, stale}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != fresh.MessageId {
		t.Errorf("failures %+v, want the fresh query only (the stale one is dropped)", resp.BatchItemFailures)
	}
	if !strings.Contains(metrics.String(), `"Expired":1`) || !strings.Contains(metrics.String(), `"Failed":1`) || !strings.Contains(logs.String(), "query expired") {
		t.Errorf("metrics %s\nlogs %s\nwant one expired and one failed query", metrics, logs)
	}
	// Hidden for a second, not the 60 s it was received with: it is back within the poll.
	back, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(src), WaitTimeSeconds: 10})
	if err != nil || len(back.Messages) != 1 || aws.ToString(back.Messages[0].MessageId) != fresh.MessageId {
		t.Errorf("the failed query did not come back within seconds: %v %v", back, err)
	}
	if n := len(receive(t, replies)); n != 0 {
		t.Errorf("%d replies: the stale query was answered, or the failed one", n)
	}
	if d, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlq),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}}); err != nil || d.Attributes["ApproximateNumberOfMessages"] != "0" {
		t.Errorf("query DLQ %v %v: want it empty", d, err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	for k, v := range map[string]string{"SESSIONHA_TABLE": "t", "SESSIONHA_REPLY_TOPIC_ARN": "arn", "SESSIONHA_QUEUE_URL": "http://q", "SESSIONHA_DLQ_URL": "http://d"} {
		t.Setenv(k, v)
	}
	t.Setenv("SESSIONHA_QUERY_MAX_AGE", "20s")
	if c, err := ConfigFromEnv(); err != nil || c.MaxAge != 20*time.Second || c.QueueURL != "http://q" || c.DLQURL != "http://d" {
		t.Errorf("good env: %+v %v", c, err)
	}
	t.Setenv("SESSIONHA_QUERY_MAX_AGE", "later")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_QUERY_MAX_AGE") {
		t.Errorf("bad max age: %v", err)
	}
	t.Setenv("SESSIONHA_QUERY_MAX_AGE", "")
	for _, k := range []string{"SESSIONHA_QUEUE_URL", "SESSIONHA_DLQ_URL"} {
		old := os.Getenv(k)
		t.Setenv(k, "")
		if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("without %s: %v", k, err)
		}
		t.Setenv(k, old)
	}
}
