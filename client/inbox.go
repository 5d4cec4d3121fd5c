package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
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

// The inbox is this instance's own queue: replies to its failover queries (subscribed to
// the reply topic with a filter on its instance id), and destroy and superseded notices
// (subscribed to every site's notice topic, Config.NoticeTopicARNs, with noticeFilter:
// destroys of its own site, or of every site with scope all, and superseded notices for
// this instance from any site). Its name comes from the site and the instance id
// (queuename.go).
//
// Notices cross sites, and regions: a topic in another region delivers to the queue (a
// cross-region subscription, made in the topic's region: regional.go), so that another
// region's logout reaches this instance before the table's replication does, and a
// takeover there tells this instance that its copy is stale. The queue's policy lets every
// one of those topics deliver. The subscriptions in the instance's own region are made
// first, and Open waits for them; those in other regions follow, and while one is
// missing (its region out of reach) the instance does not serve sessions from memory
// (owner.go: it cannot hear every site), and when it is made the instance drops its
// ownership of every copy, since a notice may have gone unheard meanwhile. With a
// lifecycle topic the queue also takes its sessions' lifecycle events (filtered on its
// instance id: lifecycle.go).
//
// Its life cycle, and why. SQS refuses to make a queue of a name deleted in the last 60 s
// (QueueDeletedRecently), allows one PurgeQueue per queue per 60 s, and may delete what
// reaches a queue in the 60 s after a purge. An inbox deleted at Close and made (or
// purged) at Open therefore fails every restart within a minute, or loses the replies
// and notices of its first minute. So the queue outlives the process:
//
//   - Open reuses the queue of its name as it is, and never purges it. What a
//     predecessor left is harmless: a reply carries the random id of the query it
//     answers, which no waiter of this process has, so it is dropped; a destroy notice
//     is still true. The queue keeps messages for inboxRetention only, so nothing stale
//     piles up. Open sets the queue's attributes and policy again (an older version may
//     have made it) and its subscriptions: Subscribe keeps an existing one with the same
//     filter, and one with another filter is replaced.
//   - Close removes nothing: the queue and its subscriptions stay, so that a restart,
//     after a crash or a clean stop alike, finds them as they were and misses nothing
//     sent meanwhile. (Unsubscribing at Close would only save the fan-out of a few
//     notices to a queue that the sweep deletes anyway.) The exception is an instance
//     whose id Open made up (InstanceID unset): no later process has its id, so its
//     Close removes its queue and subscriptions.
//   - The queue carries tags: its site, its instance id, and when the instance was last
//     seen alive (tagLastSeen), refreshed every aliveEvery while it is open. A queue
//     not seen alive for OrphanQueueAge is an orphan, its instance gone for good: live
//     instances delete their site's orphans with their subscriptions about every
//     SweepQueuesEvery (sweep.go), and so does `sessionctl sweep-queues`.
//   - Should the queue disappear anyway (an operator; a sweep that raced a restart
//     after a long absence), the instance notices when it receives or refreshes its
//     tag, and makes the queue again as soon as SQS allows the name. An Open that finds
//     the name blocked, or the bus unreachable, does not fail either: it returns, the
//     inbox is made in the background, and until it is, bus reads fail at once with
//     ErrUnavailable (or serve this instance's own copy).

// Tags of an instance queue. Tag values allow the characters of instance ids and of
// RFC 3339 times.
const (
	tagSite     = "sessionha:site"
	tagInstance = "sessionha:instance"
	tagLastSeen = "sessionha:last-seen" // RFC 3339, UTC, whole seconds
)

const (
	// inboxRetention is how long the queue keeps a message: a reply is useless after
	// MaxWait, and a notice after a restart is about sessions the new process does not
	// hold; 5 minutes covers a slow restart.
	inboxRetention = 5 * time.Minute
	// inboxVisibility is how long a received message stays hidden. Short: a message
	// that a dead process's long poll took (SQS may hand messages to a connection that
	// is gone) comes back within it, and a duplicate costs nothing (a second reply
	// finds no waiter; a notice applies twice the same).
	inboxVisibility = 2 * time.Second
	// aliveEvery is how often an open instance refreshes its queue's last-seen tag;
	// each wait is drawn from ±20 % of it.
	aliveEvery = 5 * time.Minute
	// setupTimeout bounds one attempt of making the inbox in the background.
	setupTimeout = 20 * time.Second
)

// queueAPI is the part of SQS an instance's inbox, and its sweeps, use.
type queueAPI interface {
	GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	SetQueueAttributes(context.Context, *sqs.SetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error)
	TagQueue(context.Context, *sqs.TagQueueInput, ...func(*sqs.Options)) (*sqs.TagQueueOutput, error)
	ListQueueTags(context.Context, *sqs.ListQueueTagsInput, ...func(*sqs.Options)) (*sqs.ListQueueTagsOutput, error)
	ListQueues(context.Context, *sqs.ListQueuesInput, ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error)
	DeleteQueue(context.Context, *sqs.DeleteQueueInput, ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// subscriber is the part of SNS an instance's inbox, and its sweeps, use.
type subscriber interface {
	Subscribe(context.Context, *sns.SubscribeInput, ...func(*sns.Options)) (*sns.SubscribeOutput, error)
	Unsubscribe(context.Context, *sns.UnsubscribeInput, ...func(*sns.Options)) (*sns.UnsubscribeOutput, error)
	ListSubscriptionsByTopic(context.Context, *sns.ListSubscriptionsByTopicInput, ...func(*sns.Options)) (*sns.ListSubscriptionsByTopicOutput, error)
}

// inbox is this instance's queue; see the top of this file.
type inbox struct {
	s      *Store
	q      queueAPI
	sn     subscriber
	name   string
	topics []string // the reply topic and/or the notice topics, those of the home region first
	home   int      // topics[:home] are in the instance's own region

	mu      sync.Mutex
	waiters map[string]chan *events.Reply // by request id

	setup sync.Mutex // held by ensure, so that one attempt runs at a time

	st      sync.Mutex // guards what follows
	url     string     // "" until the queue is found or made
	arn     string
	subs    map[string]bool // topics the queue is subscribed to
	problem *setupError     // why the inbox is not ready; nil once it is

	failing atomic.Bool // receives fail, or the queue was lost: notices may be late or gone (owner.go)
	away    atomic.Bool // an attempt at the subscriptions in other regions is under way (receive)

	stop context.CancelFunc
	done sync.WaitGroup
}

// setupKind says whether a failure to make the inbox passes by itself.
type setupKind int

const (
	setupUnreachable setupKind = iota // the bus did not answer, or answered with a server error: it passes
	setupBlocked                      // SQS does not allow the name yet, or has not made the queue visible yet: it passes within a minute
	setupRefused                      // refused (not authorized, invalid, someone else's queue): an operator must act
)

// setupError is a failure to make the inbox. It keeps the SDK's error to classify it and
// to say why, and never hands it to callers as such.
type setupError struct {
	step string
	err  error
	kind setupKind
	sns  bool // the step was a call to SNS: unreachable, it means publishing fails too
}

func (e *setupError) Error() string { return e.step + ": " + e.err.Error() }

// failed classifies an SDK error of one setup step.
func failed(step string, err error) *setupError {
	kind := setupRefused
	var (
		recently *sqstypes.QueueDeletedRecently
		api      smithy.APIError
	)
	switch {
	case isTransient(err):
		kind = setupUnreachable
	case errors.As(err, &recently), errors.As(err, &api) && api.ErrorCode() == "QueueDeletedRecently", queueGone(err):
		kind = setupBlocked
	}
	return &setupError{step: step, err: err, kind: kind}
}

// openInbox finds or makes the inbox, subscribes it and starts receiving. It fails only
// when the bus refuses (say, the instance may not make its queue); if the bus is out of
// reach, or SQS does not allow the queue's name yet, it returns an inbox that is made in
// the background.
func (s *Store) openInbox(ctx context.Context, q queueAPI, sn subscriber) (*inbox, error) {
	b := &inbox{s: s, q: q, sn: sn, name: InstanceQueueName(s.cfg.Site, s.cfg.InstanceID),
		waiters: map[string]chan *events.Reply{}, subs: map[string]bool{}}
	var topics []string
	if s.cfg.ReadPath == ReadBus {
		topics = append(topics, s.cfg.ReplyTopicARN)
	}
	if s.cfg.NoticeScope != NoticeOff {
		topics = append(topics, s.cfg.NoticeTopicARNs...)
	}
	if s.cfg.LifecycleTopicARN != "" {
		topics = append(topics, s.cfg.LifecycleTopicARN) // lifecycle.go
		s.startLifecycle()
	}
	b.topics, b.home = homeFirst(topics, s.region)
	if err := b.ensure(ctx, false); err != nil {
		var se *setupError
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("client: open: %w (making this instance's queue)", ctx.Err())
		case errors.As(err, &se) && se.kind == setupRefused:
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		s.log.Warn("this instance's queue is not ready; making it in the background (bus reads fail until it is)", "queue", b.name, "reason", err.Error())
	} else if b.home < len(b.topics) {
		// Other regions' notice topics: a refusal (not authorized, no such topic) stops
		// Open, as for this region's; a region out of reach does not hold Open up for
		// longer than remoteWait, and its subscription is made in the background.
		rctx, cancel := context.WithTimeout(ctx, remoteWait)
		err := b.ensure(rctx, true)
		cancel()
		var se *setupError
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("client: open: %w (subscribing this instance's queue to other regions' notice topics)", ctx.Err())
		case errors.As(err, &se) && se.kind == setupRefused:
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		case err != nil:
			s.log.Warn("this instance's queue is not yet subscribed to another region's notice topic; subscribing in the background (until then, every Load reads)", "queue", b.name, "reason", err.Error())
		}
	}
	rctx, stop := context.WithCancel(context.Background())
	b.stop = stop
	b.done.Add(2)
	go b.receive(rctx)
	go b.keepAlive(rctx)
	if s.cfg.LifecycleTopicARN != "" {
		b.done.Go(func() { s.dispatchLifecycle(rctx) })
	}
	if every := s.cfg.SweepQueuesEvery; every > 0 {
		b.done.Add(1)
		go b.sweepLoop(rctx, every)
	}
	return b, nil
}

// remoteWait bounds how long Open waits for the subscriptions in other regions.
const remoteWait = 5 * time.Second

// homeFirst orders topics with those of region first, and says how many those are.
func homeFirst(topics []string, region string) ([]string, int) {
	var home, away []string
	for _, t := range topics {
		if r := arnRegion(t); r == "" || r == region {
			home = append(home, t)
		} else {
			away = append(away, t)
		}
	}
	return append(home, away...), len(home)
}

// ensure makes what the inbox lacks: the queue (found or made, with its attributes,
// policy and tags), then its subscriptions in its own region, and with away those in
// other regions too. It returns a *setupError. A failure in this region is the inbox's
// problem; one in another region is returned only: this region's bus works.
//
// A subscription made while the instance may own sessions (any but those Open makes
// before it returns, when it owns none) may have missed notices: the instance owns
// nothing once it is made (owner.go), from before it counts as made, so that no Load
// serves a copy that a missed notice made stale.
func (b *inbox) ensure(ctx context.Context, away bool) error {
	b.setup.Lock()
	defer b.setup.Unlock()
	b.st.Lock()
	url, arn := b.url, b.arn
	b.st.Unlock()
	if url == "" {
		var err *setupError
		if url, arn, err = b.makeQueue(ctx); err != nil {
			b.fail(err)
			return err
		}
		b.st.Lock()
		b.url, b.arn, b.subs = url, arn, map[string]bool{}
		b.st.Unlock()
	}
	topics := b.topics[:b.home]
	if away {
		topics = b.topics
	}
	for i, topic := range topics {
		b.st.Lock()
		done := b.subs[topic]
		b.st.Unlock()
		if done {
			continue
		}
		if err := b.subscribe(ctx, topic, arn); err != nil {
			if i < b.home {
				b.fail(err)
			}
			return err
		}
		b.s.disownAll()
		b.st.Lock()
		if b.url == url {
			b.subs[topic] = true
		}
		b.st.Unlock()
	}
	b.st.Lock()
	b.problem = nil
	b.st.Unlock()
	return nil
}

func (b *inbox) fail(err *setupError) {
	b.st.Lock()
	b.problem = err
	b.st.Unlock()
}

// tags are the queue's tags, last seen now.
func (b *inbox) tags(now time.Time) map[string]string {
	return map[string]string{
		tagSite: b.s.cfg.Site, tagInstance: b.s.cfg.InstanceID, tagLastSeen: now.UTC().Format(time.RFC3339),
	}
}

// makeQueue finds the queue of the inbox's name, or makes it, and sets its attributes,
// policy and tags.
func (b *inbox) makeQueue(ctx context.Context) (url, arn string, _ *setupError) {
	name := aws.String(b.name)
	attrs := map[string]string{
		"MessageRetentionPeriod": strconv.Itoa(int(inboxRetention / time.Second)),
		"VisibilityTimeout":      strconv.Itoa(int(inboxVisibility / time.Second)),
		"SqsManagedSseEnabled":   "true",
	}
	fresh := false
	found, err := b.q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: name})
	switch {
	case err == nil:
		url = aws.ToString(found.QueueUrl)
	case queueGone(err):
		made, err := b.q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: name, Attributes: attrs, Tags: b.tags(time.Now())})
		var exists *sqstypes.QueueNameExists
		switch {
		case err == nil:
			url, fresh = aws.ToString(made.QueueUrl), true
		case errors.As(err, &exists): // made meanwhile, with other attributes: take it
			if found, err = b.q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: name}); err != nil {
				return "", "", failed("find this instance's queue "+b.name, err)
			}
			url = aws.ToString(found.QueueUrl)
		default:
			return "", "", failed("create this instance's queue "+b.name, err)
		}
	default:
		return "", "", failed("find this instance's queue "+b.name, err)
	}
	got, err := b.q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", failed("read this instance's queue "+b.name, err)
	}
	arn = got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if !fresh {
		t, err := b.q.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		if err != nil {
			return "", "", failed("read the tags of this instance's queue "+b.name, err)
		}
		if owner := t.Tags[tagInstance]; owner != "" && owner != b.s.cfg.InstanceID {
			return "", "", &setupError{step: "take this instance's queue " + b.name, kind: setupRefused,
				err: fmt.Errorf("it belongs to instance %q (two instance ids whose queue names collide: rename one)", owner)}
		}
	}
	attrs["Policy"] = inboxPolicy(arn, b.topics) // every topic, of every region, that delivers to it
	if _, err := b.q.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return "", "", failed("set the policy of this instance's queue "+b.name, err)
	}
	if !fresh {
		if _, err := b.q.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: b.tags(time.Now())}); err != nil {
			return "", "", failed("tag this instance's queue "+b.name, err)
		}
	}
	return url, arn, nil
}

// inboxPolicy lets the topics deliver to the queue, those of other regions included
// (with SNS's principal of the topic's region where that is an opt-in region:
// regional.go), and refuses any request to it that is not made over TLS, as the CDK's
// enforceSSL does for the site's own queues.
func inboxPolicy(queueARN string, topics []string) string {
	var principal any = "sns.amazonaws.com"
	if ps := snsPrincipals(arnRegion(queueARN), topics); len(ps) > 1 {
		principal = ps
	}
	p, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{
				"Sid": "TopicsDeliver", "Effect": "Allow", "Principal": map[string]any{"Service": principal},
				"Action": "sqs:SendMessage", "Resource": queueARN,
				"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": topics}},
			},
			map[string]any{
				"Sid": "TLSOnly", "Effect": "Deny", "Principal": map[string]any{"AWS": "*"},
				"Action": "sqs:*", "Resource": queueARN,
				"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
			},
		},
	})
	return string(p)
}

// subscribe subscribes the queue to topic with this instance's filter. Subscribe keeps an
// existing subscription with the same attributes (a predecessor's, after a restart); one
// with other attributes (an older filter) is replaced.
func (b *inbox) subscribe(ctx context.Context, topic, queueARN string) *setupError {
	attrs := map[string]string{"RawMessageDelivery": "true"}
	cfg := b.s.cfg
	switch {
	case topic == cfg.ReplyTopicARN:
		attrs["FilterPolicy"] = fmt.Sprintf(`{"requester":[%q]}`, cfg.InstanceID)
	case topic == cfg.LifecycleTopicARN:
		attrs["FilterPolicy"] = lifecycleFilter(cfg) // lifecycle.go
	default: // the notice topic
		attrs["FilterPolicy"] = noticeFilter(cfg) // owner.go
	}
	in := &sns.SubscribeInput{TopicArn: aws.String(topic), Protocol: aws.String("sqs"), Endpoint: aws.String(queueARN),
		Attributes: attrs, ReturnSubscriptionArn: true}
	_, err := b.sn.Subscribe(ctx, in)
	if subscriptionConflict(err) {
		n, uerr := unsubscribeQueue(ctx, b.sn, topic, queueARN)
		if uerr != nil {
			return snsFailed("replace the subscription of this instance's queue "+b.name, uerr)
		}
		b.s.log.Info("replaced the subscriptions of this instance's queue, which had another filter", "queue", b.name, "replaced", n)
		_, err = b.sn.Subscribe(ctx, in)
	}
	if err != nil {
		return snsFailed("subscribe this instance's queue "+b.name, err)
	}
	return nil
}

// snsFailed classifies an SNS error of one setup step.
func snsFailed(step string, err error) *setupError {
	e := failed(step, err)
	e.sns = true
	return e
}

// subscriptionConflict reports whether Subscribe failed because a subscription of the
// endpoint exists with other attributes.
func subscriptionConflict(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "InvalidParameter" && strings.Contains(api.ErrorMessage(), "already exists")
}

// unsubscribeQueue removes every subscription of topic whose endpoint is queueARN, and
// says how many.
func unsubscribeQueue(ctx context.Context, sn subscriber, topic, queueARN string) (int, error) {
	n := 0
	var next *string
	for {
		l, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic), NextToken: next})
		if err != nil {
			return n, err
		}
		for _, sub := range l.Subscriptions {
			if aws.ToString(sub.Endpoint) == queueARN {
				if _, err := sn.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: sub.SubscriptionArn}); err != nil {
					return n, err
				}
				n++
			}
		}
		if next = l.NextToken; next == nil {
			return n, nil
		}
	}
}

// queueGone reports whether an SQS call failed because the queue does not exist.
func queueGone(err error) bool {
	var (
		gone *sqstypes.QueueDoesNotExist
		api  smithy.APIError
	)
	if errors.As(err, &gone) {
		return true
	}
	return errors.As(err, &api) && (api.ErrorCode() == "QueueDoesNotExist" || api.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue")
}

// resubscribe finishes the inbox when the store recovers from degraded mode. It fails
// only if SNS is still out of reach, which publishing needs too: an inbox held up by SQS
// (out of reach, or its rules) or refused does not keep the store degraded, since
// publishing works, and is finished in the background.
func (b *inbox) resubscribe(ctx context.Context) error {
	err := b.ensure(ctx, false) // other regions' subscriptions follow in the background (receive)
	var se *setupError
	if errors.As(err, &se) && se.kind == setupUnreachable && se.sns {
		return err
	}
	return nil
}

// busDown reports whether the inbox is unfinished because SNS is out of reach: then
// publishing fails too, and the store starts degraded.
func (b *inbox) busDown() bool {
	b.st.Lock()
	defer b.st.Unlock()
	return b.problem != nil && b.problem.kind == setupUnreachable && b.problem.sns
}

// ready reports whether the queue exists and every subscription is in place, those in
// other regions included.
func (b *inbox) ready() bool {
	b.st.Lock()
	defer b.st.Unlock()
	return b.url != "" && len(b.subs) == len(b.topics)
}

// homeReady reports whether the queue exists and the subscriptions in the instance's own
// region are in place.
func (b *inbox) homeReady() bool {
	b.st.Lock()
	defer b.st.Unlock()
	if b.url == "" {
		return false
	}
	for _, t := range b.topics[:b.home] {
		if !b.subs[t] {
			return false
		}
	}
	return true
}

// readyForReplies is nil if replies can reach this instance, else an error wrapping
// ErrUnavailable that says why not.
func (b *inbox) readyForReplies() error {
	b.st.Lock()
	defer b.st.Unlock()
	if b.url != "" && b.subs[b.s.cfg.ReplyTopicARN] {
		return nil
	}
	why := "not made yet"
	if b.problem != nil {
		why = b.problem.Error()
	}
	return fmt.Errorf("%w: this instance's queue cannot take replies yet (%s); it is being made", ErrUnavailable, why)
}

// queueURL is the queue's URL, "" while it is not there.
func (b *inbox) queueURL() string {
	b.st.Lock()
	defer b.st.Unlock()
	return b.url
}

// lost forgets the queue at url, which is gone, so that it is made again.
func (b *inbox) lost(url string, err error) {
	b.st.Lock()
	defer b.st.Unlock()
	if b.url != url {
		return
	}
	b.url, b.arn, b.subs = "", "", map[string]bool{}
	b.problem = &setupError{step: "this instance's queue " + b.name + " is gone", err: err, kind: setupBlocked}
	b.s.log.Warn("this instance's queue is gone (deleted by an operator, or by a sweep that took this instance for dead); making it again", "queue", b.name)
}

// receive long-polls the queue until close, handing replies to their waiters and applying
// notices; while the inbox is unfinished it tries to finish it, with backoff.
func (b *inbox) receive(ctx context.Context) {
	defer b.done.Done()
	wait := 100 * time.Millisecond
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
			wait = min(2*wait, 5*time.Second)
			return true
		}
	}
	var tried time.Time // the last attempt to finish the inbox
	for ctx.Err() == nil {
		poll := int32(20)
		if !b.ready() && b.homeReady() {
			// Only subscriptions in other regions are missing: made in the background,
			// so that a region out of reach never holds up this region's notices and
			// replies; the receives come back sooner to try again.
			poll = 5
			if time.Since(tried) >= wait && b.away.CompareAndSwap(false, true) {
				tried = time.Now()
				b.done.Add(1)
				go func() {
					defer b.done.Done()
					defer b.away.Store(false)
					actx, cancel := context.WithTimeout(ctx, setupTimeout)
					err := b.ensure(actx, true)
					cancel()
					switch {
					case ctx.Err() != nil:
					case err == nil:
						b.s.log.Info("this instance's queue is subscribed to every site's notice topic", "queue", b.name)
					default:
						b.s.log.Debug("this instance's queue is not yet subscribed to another region's notice topic", "queue", b.name, "reason", err.Error())
					}
				}()
				wait = min(2*wait, 5*time.Second)
			}
		} else if !b.ready() {
			if time.Since(tried) >= wait {
				tried = time.Now()
				actx, cancel := context.WithTimeout(ctx, setupTimeout)
				err := b.ensure(actx, false)
				cancel()
				switch {
				case ctx.Err() != nil:
					return
				case err == nil:
					b.s.log.Info("this instance's queue is ready", "queue", b.name)
					wait = 100 * time.Millisecond
				default:
					b.s.log.Debug("this instance's queue is not ready yet", "queue", b.name, "reason", err.Error())
					wait = min(2*wait, 5*time.Second)
				}
			}
			if b.queueURL() == "" {
				if !pause() {
					return
				}
				continue
			}
			poll = 1 // receive what comes, but come back soon to finish the subscriptions
		}
		url := b.queueURL()
		out, err := b.q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: poll,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return
			case queueGone(err):
				b.failing.Store(true) // what was in it is gone
				b.lost(url, err)
				continue
			}
			b.failing.Store(true)
			b.s.log.Warn("receive on this instance's queue failed; retrying", "reason", err.Error(), "in", wait.String())
			if !pause() {
				return
			}
			continue
		}
		if b.ready() {
			wait = 100 * time.Millisecond
		}
		if b.failing.Swap(false) {
			b.s.disownAll() // notices may have been lost meanwhile (owner.go)
		}
		var done []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			if !b.handle(m) {
				continue // left in the queue: it comes again
			}
			done = append(done, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(done) > 0 {
			if _, err := b.q.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: done}); err != nil && ctx.Err() == nil {
				b.s.log.Debug("delete from this instance's queue failed", "reason", err.Error())
			}
		}
	}
}

// keepAlive refreshes the queue's last-seen tag every aliveEvery (±20 %) until close, so
// that no sweep takes this instance for dead.
func (b *inbox) keepAlive(ctx context.Context) {
	defer b.done.Done()
	for {
		t := time.NewTimer(aliveEvery*4/5 + mrand.N(aliveEvery*2/5))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		url := b.queueURL()
		if url == "" {
			continue // being made: that tags it
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := b.q.TagQueue(tctx, &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: map[string]string{tagLastSeen: time.Now().UTC().Format(time.RFC3339)}})
		cancel()
		switch {
		case err == nil || ctx.Err() != nil:
		case queueGone(err):
			b.lost(url, err)
		default:
			b.s.log.Warn("could not mark this instance's queue alive; trying again later", "queue", b.name, "reason", err.Error())
		}
	}
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

// handle routes one message: a lifecycle event carries the "lifecycle" attribute, a
// reply "requester", a superseded notice "owner", a destroy notice "site". It reports
// whether the message is done with (false: leave it in the queue).
func (b *inbox) handle(m sqstypes.Message) bool {
	body := []byte(aws.ToString(m.Body))
	if _, ok := m.MessageAttributes[events.LifecycleAttrKind]; ok {
		return b.s.takeLifecycle(body) // lifecycle.go
	}
	if _, ok := m.MessageAttributes["owner"]; ok {
		b.s.superseded(body) // owner.go
		return true
	}
	if _, ok := m.MessageAttributes["requester"]; ok {
		r, err := events.DecodeReply(body)
		if err != nil {
			b.s.log.Warn("bad reply ignored", "kind", events.ErrorKind(err), "reason", err.Error())
			return true
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
		return true // no waiter: a predecessor's query, or one that gave up
	}
	n, err := events.DecodeNotice(body)
	if err != nil {
		b.s.log.Warn("bad notice ignored", "kind", events.ErrorKind(err), "reason", err.Error())
		return true
	}
	if n.Cluster == b.s.cfg.Cluster {
		b.s.revoke(record.Key(n.Cluster, n.ID))
		b.s.stats.notices.Add(1)
	}
	return true
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

// close stops receiving, marking alive and sweeping. The queue and its subscriptions
// stay for the next Open of this instance id, or for a sweep once it is gone for good;
// but when the id was made up at Open (InstanceID unset), no later process will have it,
// so the queue goes now, with its subscriptions, rather than wait for a sweep.
func (b *inbox) close() {
	if b.stop != nil {
		b.stop()
		b.done.Wait()
	}
	if !b.s.cfg.generatedID {
		return
	}
	b.st.Lock()
	url, arn := b.url, b.arn
	b.st.Unlock()
	if url == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range b.topics {
		if _, err := unsubscribeQueue(ctx, b.sn, topic, arn); err != nil {
			b.s.log.Warn("could not remove the subscriptions of this instance's queue (its id was made up, so no successor uses it); a sweep removes them", "queue", b.name, "reason", err.Error())
			return
		}
	}
	if _, err := b.q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
		b.s.log.Warn("could not delete this instance's queue (its id was made up, so no successor uses it); a sweep deletes it", "queue", b.name, "reason", err.Error())
	}
}

// requestID makes a query's id: random, so that a reply matches only its query.
func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "q-" + strings.ToLower(hex.EncodeToString(b[:]))
}
