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

	logs := &bytes.Buffer{}
	h, err := New(db, bus, Config{Table: table, ReplyTopicARN: aws.ToString(topic.TopicArn)}, slog.New(slog.NewJSONHandler(logs, nil)))
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
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "poison" {
		t.Errorf("failures %+v, want only the poison query", resp.BatchItemFailures)
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
	for req, want := range map[string]events.ReplyStatus{"r2": events.ReplyDestroyed, "r3": events.ReplyMissing, "r4": events.ReplyMissing} {
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
