package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
)

// instanceTopics are the topics instance queues subscribe to.
func instanceTopics() []string {
	return []string{theSite.Outputs.TopicARNs[topology.TopicReply], theSite.Outputs.TopicARNs[topology.TopicNotice]}
}

// instanceTags are the tags an instance puts on its queue.
func instanceTags(site, id string, seen time.Time) map[string]string {
	return map[string]string{"sessionha:site": site, "sessionha:instance": id, "sessionha:last-seen": seen.UTC().Format(time.RFC3339)}
}

// fakeInstanceQueue makes a queue named name with tags (none if nil), subscribed to the
// instance topics as an instance's queue is, and returns its ARN. It is deleted when the
// test ends, if still there.
func fakeInstanceQueue(t *testing.T, name string, tags map[string]string) string {
	t.Helper()
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = q.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	for _, topic := range instanceTopics() {
		if _, err := sns.NewFromConfig(theSite.AWS).Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topic),
			Protocol: aws.String("sqs"), Endpoint: aws.String(arn), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
			t.Fatal(err)
		}
	}
	return arn
}

// queueExists reports whether a queue of that name exists.
func queueExists(t *testing.T, name string) bool {
	t.Helper()
	_, err := sqs.NewFromConfig(theSite.AWS).GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var gone *sqstypes.QueueDoesNotExist
	if err != nil && !errors.As(err, &gone) {
		t.Fatal(err)
	}
	return err == nil
}

// subscriptionsTo counts the subscriptions of the instance topics whose endpoint is arn.
func subscriptionsTo(t *testing.T, arn string) int {
	t.Helper()
	n := 0
	for _, topic := range instanceTopics() {
		var next *string
		for {
			out, err := sns.NewFromConfig(theSite.AWS).ListSubscriptionsByTopic(context.Background(), &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic), NextToken: next})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range out.Subscriptions {
				if aws.ToString(s.Endpoint) == arn {
					n++
				}
			}
			if next = out.NextToken; next == nil {
				break
			}
		}
	}
	return n
}

// TestSweepOrphanQueues: the queue of an instance not seen alive for longer than the
// threshold is deleted with its subscriptions, by a dry-run-first sweep and by a live
// instance on its schedule; a queue seen recently, the sweeping instance's own, a queue
// without the tags (an older client's) and another site's queue under the same prefix
// stay.
func TestSweepOrphanQueues(t *testing.T) {
	ctx := context.Background()
	sfx := randomSuffix()
	now := time.Now()
	dead := client.InstanceQueueName("local", "dead-"+sfx)
	deadARN := fakeInstanceQueue(t, dead, instanceTags("local", "dead-"+sfx, now.Add(-2*time.Hour)))
	alive := client.InstanceQueueName("local", "alive-"+sfx)
	aliveARN := fakeInstanceQueue(t, alive, instanceTags("local", "alive-"+sfx, now.Add(-10*time.Minute)))
	legacy := "sessionha-local-reply-legacy-" + sfx
	fakeInstanceQueue(t, legacy, nil)
	// Site "local-reply-<sfx>" names its queues sessionha-local-reply-<sfx>-..., under
	// this site's prefix: its tags tell them apart.
	other := "sessionha-local-reply-" + sfx + "-ops"
	fakeInstanceQueue(t, other, map[string]string{"sessionha:site": "local-reply-" + sfx})

	if _, err := client.SweepInstanceQueues(ctx, theSite.AWS, client.SweepOptions{Site: "local", OlderThan: time.Minute}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("sweep with a 1 min threshold: %v, want ErrInvalid (at least %s)", err, client.MinOrphanQueueAge)
	}
	report, err := client.SweepInstanceQueues(ctx, theSite.AWS, client.SweepOptions{Site: "local", TopicARNs: instanceTopics(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]client.QueueState{dead: client.QueueOrphan, alive: client.QueueAlive, legacy: client.QueueSkipped, other: client.QueueSkipped}
	got := map[string]client.SweptQueue{}
	for _, r := range report {
		got[r.Name] = r
	}
	for name, st := range want {
		if got[name].State != st {
			t.Errorf("dry run: queue %s: %+v, want %s", name, got[name], st)
		}
	}
	if r := got[dead]; r.Subscriptions != 2 || r.Instance != "dead-"+sfx || now.Sub(r.LastSeen) < time.Hour {
		t.Errorf("dry run: the dead instance's queue reported as %+v, want its 2 subscriptions, its id and its last-seen time", r)
	}
	if !queueExists(t, dead) || subscriptionsTo(t, deadARN) != 2 {
		t.Fatalf("a dry run deleted something")
	}

	// A live instance sweeps on its schedule; its own queue, even when it looks dead,
	// stays.
	sweeper := "sweeper-" + sfx
	openHA(t, sweeper, func(c *client.Config) {
		c.SweepQueuesEvery = 2 * time.Second
		c.ReplyTopicARN = theSite.Outputs.TopicARNs[topology.TopicReply] // as site.env sets it: the sweep removes subscriptions there too
	})
	own := client.InstanceQueueName("local", sweeper)
	q := sqs.NewFromConfig(theSite.AWS)
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(own)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: u.QueueUrl, Tags: map[string]string{"sessionha:last-seen": now.Add(-3 * time.Hour).UTC().Format(time.RFC3339)}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the live instance's sweep deletes the dead instance's queue", func() (bool, string) {
		return !queueExists(t, dead), "still there"
	})
	if n := subscriptionsTo(t, deadARN); n != 0 {
		t.Errorf("%d subscriptions left to the deleted queue, want 0", n)
	}
	for _, name := range []string{alive, legacy, other, own} {
		if !queueExists(t, name) {
			t.Errorf("queue %s was deleted; it is not a dead instance's queue of this site, or it is the sweeper's own", name)
		}
	}
	if n := subscriptionsTo(t, aliveARN); n != 2 {
		t.Errorf("the live instance's queue has %d subscriptions after the sweep, want 2", n)
	}
}

// TestInstanceQueueComesBack: an open instance whose queue is deleted under it (by an
// operator, or by a sweep that raced its return) makes it again and reads over the bus
// again. With the AWS rules off here, so that SQS allows the name at once; with them
// on, it takes up to the 60 s of QueueDeletedRecently (TestOpenWhileQueueNameBlocked).
func TestInstanceQueueComesBack(t *testing.T) {
	ctx := context.Background()
	theSite.Edge.EnforceAWSRules(false)
	t.Cleanup(func() { theSite.Edge.EnforceAWSRules(true) })
	w := openHA(t, "comeback-writer-"+randomSuffix(), nil)
	s, err := w.Create(ctx, client.NewSession{Principal: "ines"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session is in the table", func() (bool, string) { return tableItem(t, s.ID()) != nil, "not yet" })
	name := "comeback-" + randomSuffix()
	a := openHA(t, name, busReader)
	if _, err := a.Load(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromConfig(theSite.AWS)
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(client.InstanceQueueName("local", name))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: u.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	// A session the instance never read: only an answer over the bus can give it.
	s2, err := w.Create(ctx, client.NewSession{Principal: "ines"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session is in the table", func() (bool, string) { return tableItem(t, s2.ID()) != nil, "not yet" })
	eventually(t, "the instance makes its queue again and reads over the bus", func() (bool, string) {
		_, err := a.Load(ctx, s2.ID())
		return err == nil, fmt.Sprint(err)
	})
	if !queueExists(t, client.InstanceQueueName("local", name)) {
		t.Fatal("read over the bus, but the instance's queue is not there")
	}
}

// TestOpenWhileQueueNameBlocked: an instance whose queue was deleted less than 60 s ago
// (under the AWS rules, which refuse the name meanwhile) still opens at once, in failover
// mode: it publishes, and its bus reads fail at once with ErrUnavailable, rather than
// waiting out MaxWait, until its queue can be made.
func TestOpenWhileQueueNameBlocked(t *testing.T) {
	ctx := context.Background()
	theSite.Edge.EnforceAWSRules(true)
	name := "blocked-" + randomSuffix()
	first := openHA(t, name, busReader)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromConfig(theSite.AWS)
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(client.InstanceQueueName("local", name))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: u.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	b := openHA(t, name, func(c *client.Config) { busReader(c); c.MaxWait = 30 * time.Second })
	if m := b.Mode(); m != client.ModeFailover {
		t.Fatalf("mode %s after Open with the queue's name blocked, want failover (the bus works)", m)
	}
	s, err := b.Create(ctx, client.NewSession{Principal: "jon"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	other, err := openHA(t, "blocked-writer-"+randomSuffix(), nil).Create(ctx, client.NewSession{Principal: "kim"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sessions are in the table", func() (bool, string) {
		return tableItem(t, s.ID()) != nil && tableItem(t, other.ID()) != nil, "not yet"
	})
	// ErrUnavailable, not ErrTimeout: it did not wait MaxWait for a reply that could not come.
	if _, err = b.Load(ctx, other.ID()); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("bus read with no queue yet: %v, want ErrUnavailable", err)
	}
}

// TestGeneratedInstanceIDLeavesNoQueue: an instance whose id Open made up (no
// SESSIONHA_INSTANCE_ID) will never be started again under it, so its clean Close removes
// its queue and subscriptions rather than leave them for a sweep.
func TestGeneratedInstanceIDLeavesNoQueue(t *testing.T) {
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	list := func() map[string]bool {
		out, err := q.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(client.InstanceQueuePrefix("local")), MaxResults: aws.Int32(1000)})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, u := range out.QueueUrls {
			names[u[strings.LastIndexByte(u, '/')+1:]] = true
		}
		return names
	}
	before := list()
	s := openHA(t, "", nil) // the id is made up
	var mine []string
	for name := range list() {
		if !before[name] {
			mine = append(mine, name)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("queues made by the Open: %v, want one", mine)
	}
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(mine[0])})
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if n := subscriptionsTo(t, arn); n != 1 {
		t.Fatalf("%d subscriptions to the queue, want the notice topic's", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if queueExists(t, mine[0]) || subscriptionsTo(t, arn) != 0 {
		t.Fatalf("the queue of a made-up instance id, or its subscription, is left after Close")
	}
}
