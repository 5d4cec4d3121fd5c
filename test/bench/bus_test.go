package bench

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
)

// The bus alone: the pipeline's ceiling when the table is not what binds it. A topic and
// a queue of the bench's own, subscribed as the ops queue is (raw delivery, no filter),
// carry n messages of the reference create's size, published by conc goroutines, while
// as many pollers as the event source mapping runs (4) receive them ten at a time with
// long polls and delete them in batches: SNS publish, fan-out, receive and delete, what
// every op of the pipeline also pays, without the Lambda invocation and the table.
type busRig struct {
	topic, queue string
	body         string
}

const busPollers = 4 // the mapping's MaxConcurrency default

func (b *bencher) busRig() *busRig {
	if b.bus != nil {
		return b.bus
	}
	bus, q := sns.NewFromConfig(theSite.AWS), sqs.NewFromConfig(theSite.AWS)
	t, err := bus.CreateTopic(b.ctx, &sns.CreateTopicInput{Name: aws.String("sessionha-bench-bus")})
	if err != nil {
		b.t.Fatal(err)
	}
	qu, err := q.CreateQueue(b.ctx, &sqs.CreateQueueInput{QueueName: aws.String("sessionha-bench-bus")})
	if err != nil {
		b.t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(b.ctx, &sqs.GetQueueAttributesInput{QueueUrl: qu.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := bus.Subscribe(b.ctx, &sns.SubscribeInput{TopicArn: t.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		b.t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	body, err := events.EncodeSessionOp(&events.SessionOp{V: events.SchemaVersion, Op: events.OpCreate, Cluster: "bench-bus",
		ID: events.HashID("bench-bus"), Version: fmt.Sprintf("%016x", uint64(now)<<16), Writer: "bench", Site: theSite.Topology.Site.Name, At: now,
		Session: &events.Session{Principal: "bench", Created: now, LastAccess: now, MaxIdle: 1800, MaxLife: 28800, Attrs: refAttributes()}})
	if err != nil {
		b.t.Fatal(err)
	}
	b.bus = &busRig{topic: aws.ToString(t.TopicArn), queue: aws.ToString(qu.QueueUrl), body: string(body)}
	return b.bus
}

// rawBus publishes n reference messages by conc goroutines and times until the pollers
// have received and deleted them all.
func (b *bencher) rawBus(conc, n int) run {
	rig := b.busRig()
	bus, q := sns.NewFromConfig(theSite.AWS), sqs.NewFromConfig(theSite.AWS)
	var got atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, busPollers)
	for range busPollers {
		wg.Go(func() {
			for got.Load() < int64(n) {
				select {
				case <-done:
					return
				default:
				}
				out, err := q.ReceiveMessage(b.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(rig.queue),
					MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					errs <- err
					return
				}
				if len(out.Messages) == 0 {
					continue
				}
				del := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					del[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
				}
				if _, err := q.DeleteMessageBatch(b.ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(rig.queue), Entries: del}); err != nil {
					errs <- err
					return
				}
				got.Add(int64(len(out.Messages)))
			}
		})
	}
	start := time.Now()
	r := b.measure(conc, n, func(int) error {
		_, err := bus.Publish(b.ctx, &sns.PublishInput{TopicArn: aws.String(rig.topic), Message: aws.String(rig.body)})
		return err
	})
	deadline := time.Now().Add(3 * time.Minute)
	for got.Load() < int64(n) && time.Now().Before(deadline) && len(errs) == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	r.Elapsed = time.Since(start)
	close(done)
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs); err != nil {
		b.t.Fatalf("the bus alone: %v", err)
	}
	if got.Load() < int64(n) {
		b.t.Fatalf("the bus alone: %d of %d messages received within 3 minutes", got.Load(), n)
	}
	b.t.Logf("the bus alone (publish → fan-out → receive → delete), %d by %d: %.0f/s", n, conc, r.perSecond())
	return r
}
