package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// queueAPI is the part of SQS an instance's inbox uses.
type queueAPI interface {
	CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	PurgeQueue(context.Context, *sqs.PurgeQueueInput, ...func(*sqs.Options)) (*sqs.PurgeQueueOutput, error)
	DeleteQueue(context.Context, *sqs.DeleteQueueInput, ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// subscriber is the part of SNS an instance's inbox uses.
type subscriber interface {
	Subscribe(context.Context, *sns.SubscribeInput, ...func(*sns.Options)) (*sns.SubscribeOutput, error)
	Unsubscribe(context.Context, *sns.UnsubscribeInput, ...func(*sns.Options)) (*sns.UnsubscribeOutput, error)
	ListSubscriptionsByTopic(context.Context, *sns.ListSubscriptionsByTopicInput, ...func(*sns.Options)) (*sns.ListSubscriptionsByTopicOutput, error)
}

// inbox is this instance's own queue: replies to its failover queries (subscribed to the
// reply topic with a filter on its instance id) and destroy notices (subscribed to the
// notice topic, filtered by site unless the scope is all). It is made at Open and removed
// at Close. A crashed instance's inbox is an orphan until an instance with the same id
// opens again: the name is fixed, so Open takes it over, empties it and replaces its
// subscriptions.
type inbox struct {
	s    *Store
	q    queueAPI
	sn   subscriber
	url  string
	arn  string
	subs []string

	mu      sync.Mutex
	waiters map[string]chan *events.Reply // by request id

	subMu   sync.Mutex // guards missing, and subs once receiving
	missing []string   // topics not yet subscribed: the bus was down at Open

	failing atomic.Bool // the last receive failed: notices may be late (owner.go)

	stop context.CancelFunc
	done chan struct{}
}

var queueNameChars = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// inboxName is the queue's name: sessionha-<site>-reply-<instance>, the prefix that the
// auth servers' IAM policy allows, within SQS's 80 characters.
func inboxName(site, instance string) string {
	name := "sessionha-" + site + "-reply-" + queueNameChars.ReplaceAllString(instance, "_")
	if len(name) > 80 {
		sum := sha256.Sum256([]byte(instance))
		name = name[:80-9] + "-" + hex.EncodeToString(sum[:4])
	}
	return name
}

// openInbox makes (or takes over) the inbox and starts receiving.
func (s *Store) openInbox(ctx context.Context, q queueAPI, sn subscriber) (*inbox, error) {
	b := &inbox{s: s, q: q, sn: sn, waiters: map[string]chan *events.Reply{}}
	var topics []string
	if s.cfg.ReadPath == ReadBus {
		topics = append(topics, s.cfg.ReplyTopicARN)
	}
	if s.cfg.NoticeScope != NoticeOff {
		topics = append(topics, s.cfg.NoticeTopicARN)
	}
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect": "Allow", "Principal": map[string]any{"Service": "sns.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": "*",
			"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": topics}},
		}},
	})
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(inboxName(s.cfg.Site, s.cfg.InstanceID)),
		Attributes: map[string]string{
			"MessageRetentionPeriod": "300", // a reply is useless after MaxWait, a notice after PurgeDelay
			"SqsManagedSseEnabled":   "true",
			"Policy":                 string(policy),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: create this instance's queue: %v", ErrUnavailable, err)
	}
	b.url = aws.ToString(out.QueueUrl)
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return nil, fmt.Errorf("%w: read this instance's queue: %v", ErrUnavailable, err)
	}
	b.arn = attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	// A predecessor with our id may have crashed: drop what it left.
	if _, err := q.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: out.QueueUrl}); err != nil {
		s.log.Debug("purge of this instance's queue failed", "reason", err.Error())
	}
	for _, topic := range topics {
		if transient, err := b.subscribe(ctx, topic); err != nil {
			if !transient {
				b.close(ctx)
				return nil, err
			}
			// The bus is down: the store starts degraded and subscribes once it is back,
			// so that an instance restarted during an outage comes up and serves.
			b.missing = append(b.missing, topic)
		}
	}
	rctx, stop := context.WithCancel(context.Background())
	b.stop, b.done = stop, make(chan struct{})
	go b.receive(rctx)
	return b, nil
}

// resubscribe makes the subscriptions that failed at Open because the bus was down.
func (b *inbox) resubscribe(ctx context.Context) error {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	for len(b.missing) > 0 {
		if _, err := b.subscribe(ctx, b.missing[0]); err != nil {
			return err
		}
		b.missing = b.missing[1:]
	}
	return nil
}

// subscribed reports whether every subscription is in place.
func (b *inbox) subscribed() bool {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	return len(b.missing) == 0
}

// subscribe replaces any subscription of this queue to topic (an orphan's) with one
// filtered for this instance. transient says whether the failure may pass by itself
// (the bus unreachable), rather than being a refusal that needs an operator.
func (b *inbox) subscribe(ctx context.Context, topic string) (transient bool, err error) {
	var next *string
	for {
		l, err := b.sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic), NextToken: next})
		if err != nil {
			return isTransient(err), fmt.Errorf("%w: list subscriptions: %v", ErrUnavailable, err)
		}
		for _, sub := range l.Subscriptions {
			if aws.ToString(sub.Endpoint) == b.arn {
				_, _ = b.sn.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: sub.SubscriptionArn})
			}
		}
		if next = l.NextToken; next == nil {
			break
		}
	}
	attrs := map[string]string{"RawMessageDelivery": "true"}
	cfg := b.s.cfg
	switch {
	case topic == cfg.ReplyTopicARN:
		attrs["FilterPolicy"] = fmt.Sprintf(`{"requester":[%q]}`, cfg.InstanceID)
	default: // the notice topic
		attrs["FilterPolicy"] = noticeFilter(cfg) // owner.go
	}
	out, err := b.sn.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(topic), Protocol: aws.String("sqs"), Endpoint: aws.String(b.arn),
		Attributes: attrs, ReturnSubscriptionArn: true,
	})
	if err != nil {
		return isTransient(err), fmt.Errorf("%w: subscribe this instance's queue: %v", ErrUnavailable, err)
	}
	b.subs = append(b.subs, aws.ToString(out.SubscriptionArn))
	return false, nil
}

// isTransient reports whether an AWS call failed in a way that passes by itself: no
// answer, a server-side failure or throttling, as opposed to a refusal (not authorized,
// no such topic, an invalid parameter).
func isTransient(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return true
	}
	if api.ErrorFault() == smithy.FaultServer {
		return true
	}
	switch api.ErrorCode() {
	case "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
		"TooManyRequestsException", "ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout":
		return true
	}
	return false
}

// receive long-polls the queue until close, handing replies to their waiters and applying
// notices.
func (b *inbox) receive(ctx context.Context) {
	defer close(b.done)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		out, err := b.q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(b.url), MaxNumberOfMessages: 10, WaitTimeSeconds: 20,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.failing.Store(true)
			b.s.log.Warn("receive on this instance's queue failed; retrying", "reason", err.Error(), "in", wait.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		if b.failing.Swap(false) {
			b.s.disownAll() // notices may have been lost meanwhile (owner.go)
		}
		var done []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			b.handle(m)
			done = append(done, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(done) > 0 {
			if _, err := b.q.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(b.url), Entries: done}); err != nil && ctx.Err() == nil {
				b.s.log.Debug("delete from this instance's queue failed", "reason", err.Error())
			}
		}
	}
}

// handle routes one message: a reply carries the "requester" attribute, a superseded
// notice "owner", a destroy notice "site".
func (b *inbox) handle(m sqstypes.Message) {
	body := []byte(aws.ToString(m.Body))
	if _, ok := m.MessageAttributes["owner"]; ok {
		b.s.superseded(body) // owner.go
		return
	}
	if _, ok := m.MessageAttributes["requester"]; ok {
		r, err := events.DecodeReply(body)
		if err != nil {
			b.s.log.Warn("bad reply ignored", "kind", events.ErrorKind(err), "reason", err.Error())
			return
		}
		b.mu.Lock()
		ch := b.waiters[r.RequestID]
		b.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default: // a duplicate delivery: the first answer is already there
			}
		}
		return
	}
	n, err := events.DecodeNotice(body)
	if err != nil {
		b.s.log.Warn("bad notice ignored", "kind", events.ErrorKind(err), "reason", err.Error())
		return
	}
	if n.Cluster == b.s.cfg.Cluster {
		b.s.revoke(record.Key(n.Cluster, n.ID))
		b.s.stats.notices.Add(1)
	}
}

// wait registers a waiter for the reply to request id; cancel removes it.
func (b *inbox) wait(id string) (<-chan *events.Reply, func()) {
	ch := make(chan *events.Reply, 1)
	b.mu.Lock()
	b.waiters[id] = ch
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.waiters, id)
		b.mu.Unlock()
	}
}

// close stops receiving, unsubscribes and deletes the queue.
func (b *inbox) close(ctx context.Context) error {
	if b.stop != nil {
		b.stop()
		<-b.done
	}
	var errs []error
	b.subMu.Lock()
	subs := b.subs
	b.subMu.Unlock()
	for _, sub := range subs {
		if _, err := b.sn.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: aws.String(sub)}); err != nil {
			errs = append(errs, err)
		}
	}
	if b.url != "" {
		if _, err := b.q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(b.url)}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove this instance's queue: %v", err)
	}
	return nil
}

// requestID makes a query's id: random, so that a reply matches only its query.
func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "q-" + strings.ToLower(hex.EncodeToString(b[:]))
}
