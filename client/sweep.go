package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Sweeping orphan instance queues. An instance's queue outlives its process (inbox.go),
// so a queue whose instance is gone for good stays, with its subscriptions, until a sweep
// deletes it. A queue is an orphan when its last-seen tag is older than OlderThan: an
// open instance refreshes it every aliveEvery (5 minutes), so the least OlderThan,
// MinOrphanQueueAge, leaves room for two missed refreshes and a clock off by minutes.
// Only queues under the site's prefix that are tagged as the site's instance queues
// are considered: a queue without the tags (made by an older client, or not an instance
// queue at all: another site's name may begin with this site's prefix) is reported and
// left alone.
//
// Before deleting an orphan, the sweep reads its tag again, so that an instance that
// came back meanwhile keeps its queue; one that comes back in the instant between that
// read and the deletion finds its queue gone and makes it again (inbox.go).

const (
	// DefaultOrphanQueueAge is how long an instance queue may go without being seen
	// alive before a sweep deletes it, unless told otherwise.
	DefaultOrphanQueueAge = time.Hour
	// MinOrphanQueueAge is the least age a sweep accepts.
	MinOrphanQueueAge = 15 * time.Minute
)

// QueueState is what a sweep found an instance queue to be, or did with it.
type QueueState string

const (
	QueueAlive   QueueState = "alive"   // seen alive within OlderThan: kept
	QueueOrphan  QueueState = "orphan"  // not seen for OlderThan; a dry run leaves it
	QueueDeleted QueueState = "deleted" // an orphan, deleted with its subscriptions
	QueueSkipped QueueState = "skipped" // not tagged as an instance queue of the site: left alone
	QueueFailed  QueueState = "failed"  // an orphan that could not be removed (Reason says why)
)

// SweptQueue is one queue a sweep looked at.
type SweptQueue struct {
	Name     string
	Instance string    // its instance id, from its tag; "" if it has none
	LastSeen time.Time // when its instance was last seen alive; zero if unknown
	// Subscriptions is how many subscriptions of the swept topics deliver to it
	// (counted for orphans only).
	Subscriptions int
	State         QueueState
	Reason        string // why it was skipped, or why it failed
}

// SweepOptions configure SweepInstanceQueues; the zero value of a field means the default
// named in its comment.
type SweepOptions struct {
	// Site whose instance queues are swept (sessionha-<Site>-reply-*). Required.
	Site string
	// OlderThan is how long a queue must have gone without being seen alive to be an
	// orphan. Default DefaultOrphanQueueAge; at least MinOrphanQueueAge.
	OlderThan time.Duration
	// TopicARNs are the topics whose subscriptions to a deleted queue are removed with
	// it: the site's reply topic and every site's notice topic (each asked in its own
	// region). Default none.
	TopicARNs []string
	// Keep names a queue never to delete: the sweeping instance's own. Default none.
	Keep string
	// DryRun finds the orphans and deletes nothing. Default false.
	DryRun bool
}

// SweepInstanceQueues deletes the site's instance queues that have not been seen alive
// for o.OlderThan, with their subscriptions on o.TopicARNs, and reports every queue under
// the site's prefix, sorted by name. An error that stops the sweep wraps ErrUnavailable
// (or ErrInvalid for bad options); if some orphans could not be removed, the error says
// how many and the report says why.
func SweepInstanceQueues(ctx context.Context, awsCfg aws.Config, o SweepOptions) ([]SweptQueue, error) {
	// Topics of other regions (every site's notice topic) are asked in their region.
	return sweepQueues(ctx, sqs.NewFromConfig(awsCfg), newRegionalSNS(awsCfg, sns.NewFromConfig(awsCfg)), o, time.Now())
}

func sweepQueues(ctx context.Context, q queueAPI, sn subscriber, o SweepOptions, now time.Time) ([]SweptQueue, error) {
	if !queueSite.MatchString(o.Site) {
		return nil, fmt.Errorf("%w: sweep: site %q: want 1-%d characters of A-Z, a-z, 0-9, '_' and '-'", ErrInvalid, o.Site, maxQueueSite)
	}
	if o.OlderThan == 0 {
		o.OlderThan = DefaultOrphanQueueAge
	}
	if o.OlderThan < MinOrphanQueueAge {
		return nil, fmt.Errorf("%w: sweep: OlderThan %s: at least %s, so that no live instance is taken for dead", ErrInvalid, o.OlderThan, MinOrphanQueueAge)
	}
	prefix := InstanceQueuePrefix(o.Site)
	urls, err := listQueues(ctx, q, prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: sweep: list the queues %s*: %v", ErrUnavailable, prefix, err)
	}
	var (
		report    []SweptQueue
		orphans   []int // indexes into report
		orphanURL = map[int]string{}
	)
	for _, url := range urls {
		name := url[strings.LastIndexByte(url, '/')+1:]
		if !strings.HasPrefix(name, prefix) || name == o.Keep {
			continue
		}
		r := SweptQueue{Name: name}
		t, err := q.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		switch {
		case queueGone(err):
			continue // deleted meanwhile
		case err != nil:
			r.State, r.Reason = QueueFailed, "read its tags: "+err.Error()
			report = append(report, r)
			continue
		}
		r.Instance = t.Tags[tagInstance]
		seen, serr := time.Parse(time.RFC3339, t.Tags[tagLastSeen])
		switch {
		case t.Tags[tagSite] != o.Site:
			r.State, r.Reason = QueueSkipped, fmt.Sprintf("not tagged %s=%s: made by an older client, or not an instance queue; delete it by hand if it is an orphan", tagSite, o.Site)
		case serr != nil:
			r.State, r.Reason = QueueSkipped, fmt.Sprintf("no readable %s tag", tagLastSeen)
		case now.Sub(seen) < o.OlderThan:
			r.LastSeen, r.State = seen, QueueAlive
		default:
			r.LastSeen, r.State = seen, QueueOrphan
			orphans = append(orphans, len(report))
			orphanURL[len(report)] = url
		}
		report = append(report, r)
	}
	if len(orphans) == 0 {
		return sorted(report), nil
	}
	subs, err := subscriptionsByEndpoint(ctx, sn, o.TopicARNs, prefix)
	if err != nil {
		return sorted(report), fmt.Errorf("%w: sweep: list the subscriptions of the topics: %v", ErrUnavailable, err)
	}
	failures := 0
	for _, i := range orphans {
		r := &report[i]
		url := orphanURL[i]
		a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		switch {
		case queueGone(err):
			r.State, r.Reason = QueueDeleted, "deleted meanwhile"
			continue
		case err != nil:
			r.State, r.Reason = QueueFailed, "read its ARN: "+err.Error()
			failures++
			continue
		}
		mine := subs[a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]]
		r.Subscriptions = len(mine)
		if o.DryRun {
			continue
		}
		if err := removeOrphan(ctx, q, sn, url, mine, o.OlderThan, now); err != nil {
			if errors.Is(err, errCameBack) {
				r.State, r.Reason = QueueAlive, "seen alive again while the sweep ran"
				continue
			}
			r.State, r.Reason = QueueFailed, err.Error()
			failures++
			continue
		}
		r.State = QueueDeleted
	}
	if failures > 0 {
		return sorted(report), fmt.Errorf("%w: sweep: %d of %d orphan queues could not be removed", ErrUnavailable, failures, len(orphans))
	}
	return sorted(report), nil
}

var errCameBack = errors.New("seen alive again")

// removeOrphan reads the queue's last-seen tag once more, then removes its subscriptions
// and deletes it. A subscription that cannot be removed keeps the queue, for the next
// sweep: a subscription left to a deleted queue would deliver to its successor of the
// same name.
func removeOrphan(ctx context.Context, q queueAPI, sn subscriber, url string, subs []string, olderThan time.Duration, now time.Time) error {
	t, err := q.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
	if err != nil {
		return fmt.Errorf("read its tags again: %v", err)
	}
	if seen, err := time.Parse(time.RFC3339, t.Tags[tagLastSeen]); err == nil && now.Sub(seen) < olderThan {
		return errCameBack
	}
	for _, sub := range subs {
		if _, err := sn.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: aws.String(sub)}); err != nil {
			return fmt.Errorf("unsubscribe it: %v", err)
		}
	}
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil && !queueGone(err) {
		return fmt.Errorf("delete it: %v", err)
	}
	return nil
}

// listQueues lists the URLs of the queues whose names begin with prefix.
func listQueues(ctx context.Context, q queueAPI, prefix string) ([]string, error) {
	var (
		urls []string
		next *string
	)
	for {
		out, err := q.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix), MaxResults: aws.Int32(1000), NextToken: next})
		if err != nil {
			return nil, err
		}
		urls = append(urls, out.QueueUrls...)
		if next = out.NextToken; next == nil || len(out.QueueUrls) == 0 {
			return urls, nil
		}
	}
}

// subscriptionsByEndpoint lists the subscriptions of topics whose endpoint is a queue
// whose name begins with prefix, by endpoint.
func subscriptionsByEndpoint(ctx context.Context, sn subscriber, topics []string, prefix string) (map[string][]string, error) {
	subs := map[string][]string{}
	for _, topic := range topics {
		var next *string
		for {
			l, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic), NextToken: next})
			if err != nil {
				return nil, fmt.Errorf("%s: %v", topic, err)
			}
			for _, s := range l.Subscriptions {
				ep := aws.ToString(s.Endpoint)
				if aws.ToString(s.Protocol) == "sqs" && strings.HasPrefix(ep[strings.LastIndexByte(ep, ':')+1:], prefix) {
					subs[ep] = append(subs[ep], aws.ToString(s.SubscriptionArn))
				}
			}
			if next = l.NextToken; next == nil {
				break
			}
		}
	}
	return subs, nil
}

func sorted(r []SweptQueue) []SweptQueue {
	slices.SortFunc(r, func(a, b SweptQueue) int { return strings.Compare(a.Name, b.Name) })
	return r
}

// sweepLoop sweeps the site's orphan queues about every `every`, each wait drawn from
// [every/2, 3·every/2), so that a fleet started together does not sweep together.
func (b *inbox) sweepLoop(ctx context.Context, every time.Duration) {
	defer b.done.Done()
	cfg := b.s.cfg
	var topics []string
	for _, t := range append([]string{cfg.ReplyTopicARN, cfg.NoticeTopicARN, cfg.LifecycleTopicARN}, cfg.NoticeTopicARNs...) {
		if t != "" && !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	for {
		t := time.NewTimer(every/2 + mrand.N(every))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		report, err := sweepQueues(sctx, b.q, b.sn, SweepOptions{Site: cfg.Site, OlderThan: cfg.OrphanQueueAge, TopicARNs: topics, Keep: b.name}, time.Now())
		cancel()
		if ctx.Err() != nil {
			return
		}
		var deleted []string
		for _, r := range report {
			if r.State == QueueDeleted {
				deleted = append(deleted, r.Name)
			}
		}
		if len(deleted) > 0 {
			b.s.log.Info("deleted the queues of instances gone for good", "queues", deleted, "notSeenFor", cfg.OrphanQueueAge.String())
		}
		if err != nil {
			b.s.log.Warn("sweep of orphan instance queues failed; trying again at the next", "reason", err.Error())
		}
	}
}
