package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// Helpers for tests that use the client in process (rather than through authserver
// processes): stores on the local site, a tap on the ops topic, the table's items.

// openHA opens a store with persistence ha on the site, as instance name; edit changes the
// configuration first. It is closed when the test ends.
func openHA(t *testing.T, name string, edit func(*client.Config)) *client.Store {
	t.Helper()
	cfg := client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		NoticeTopicARN: theSite.Outputs.TopicARNs[topology.TopicNotice], InstanceID: name, AWS: &theSite.AWS,
		Logger: slog.New(slog.DiscardHandler), JournalDir: t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tableItem reads a session's item (consistent read); nil if there is none.
func tableItem(t *testing.T, id string) *record.Item {
	t.Helper()
	tbl := &record.Table{DB: theSite.DynamoDBClient(), Name: theSite.Outputs.Table}
	it, err := tbl.Get(context.Background(), record.Key("default", events.HashID(id)))
	if err != nil {
		t.Fatalf("read the table: %v", err)
	}
	return it
}

// opsTap is a queue of the test's own subscribed to the ops topic (raw delivery), to see
// exactly what the client publishes.
type opsTap struct {
	t   *testing.T
	q   *sqs.Client
	url string
}

func newOpsTap(t *testing.T) *opsTap {
	t.Helper()
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	bus := sns.NewFromConfig(theSite.AWS)
	name := "e2e-tap-" + randomSuffix()
	created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(created.QueueUrl)
	t.Cleanup(func() { _, _ = q.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}) })
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(theSite.Outputs.TopicARNs[topology.TopicOps]), Protocol: aws.String("sqs"),
		Endpoint:   aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
		Attributes: map[string]string{"RawMessageDelivery": "true"}, ReturnSubscriptionArn: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = bus.Unsubscribe(context.Background(), &sns.UnsubscribeInput{SubscriptionArn: sub.SubscriptionArn})
	})
	return &opsTap{t: t, q: q, url: url}
}

// receive returns the ops on the tap for the given session ids, waiting until there are at
// least n of them, then for another quiet second so that extra ones show too.
func (p *opsTap) receive(n int, ids ...string) []*events.SessionOp {
	p.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[events.HashID(id)] = true
	}
	var got []*events.SessionOp
	deadline := time.Now().Add(30 * time.Second)
	quiet := time.Time{}
	for {
		out, err := p.q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(p.url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			p.t.Fatalf("receive from the tap: %v", err)
		}
		for _, m := range out.Messages {
			_, _ = p.q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(p.url), ReceiptHandle: m.ReceiptHandle})
			op, err := events.DecodeSessionOp([]byte(aws.ToString(m.Body)))
			if err != nil {
				p.t.Fatalf("the tap got a message that does not decode: %v", err)
			}
			if want[op.ID] {
				got = append(got, op)
			}
		}
		switch {
		case len(got) >= n && quiet.IsZero():
			quiet = time.Now().Add(time.Second)
		case len(got) >= n && time.Now().After(quiet):
			return got
		case len(got) < n && time.Now().After(deadline):
			p.t.Fatalf("the tap got %d ops for these sessions within 30s, want %d", len(got), n)
		}
	}
}

// kinds lists the kinds of ops, for messages.
func kinds(ops []*events.SessionOp) string {
	var k []string
	for _, op := range ops {
		k = append(k, string(op.Op))
	}
	return strings.Join(k, ",")
}
