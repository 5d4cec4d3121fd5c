package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// fakeBus holds queues (by name: their tags) and subscriptions (ARN -> endpoint) for the
// sweep's unit tests, which need what the local site cannot do on demand: a queue that
// comes back to life between the sweep's two reads, and a refused unsubscribe.
type fakeBus struct {
	queueAPI // the calls the sweep does not make panic
	queues   map[string]map[string]string
	subs     map[string]string
	// tagReads counts ListQueueTags per queue; onSecondRead runs at the second.
	tagReads        map[string]int
	onSecondRead    func(name string)
	failUnsubscribe bool
	deleted         []string
}

func newFakeBus() *fakeBus {
	return &fakeBus{queues: map[string]map[string]string{}, subs: map[string]string{}, tagReads: map[string]int{}}
}

const fakeQueueURL = "https://sqs.us-east-1.amazonaws.com/1/"

func fakeARN(name string) string { return "arn:aws:sqs:us-east-1:1:" + name }

func (f *fakeBus) ListQueues(_ context.Context, in *sqs.ListQueuesInput, _ ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error) {
	var urls []string
	for name := range f.queues {
		if strings.HasPrefix(name, aws.ToString(in.QueueNamePrefix)) {
			urls = append(urls, fakeQueueURL+name)
		}
	}
	return &sqs.ListQueuesOutput{QueueUrls: urls}, nil
}

func (f *fakeBus) name(url *string) (string, error) {
	name := strings.TrimPrefix(aws.ToString(url), fakeQueueURL)
	if _, ok := f.queues[name]; !ok {
		return "", &sqstypes.QueueDoesNotExist{Message: aws.String("no queue")}
	}
	return name, nil
}

func (f *fakeBus) ListQueueTags(_ context.Context, in *sqs.ListQueueTagsInput, _ ...func(*sqs.Options)) (*sqs.ListQueueTagsOutput, error) {
	name, err := f.name(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	f.tagReads[name]++
	if f.tagReads[name] == 2 && f.onSecondRead != nil {
		f.onSecondRead(name)
	}
	return &sqs.ListQueueTagsOutput{Tags: f.queues[name]}, nil
}

func (f *fakeBus) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	name, err := f.name(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"QueueArn": fakeARN(name)}}, nil
}

func (f *fakeBus) DeleteQueue(_ context.Context, in *sqs.DeleteQueueInput, _ ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error) {
	name, err := f.name(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	delete(f.queues, name)
	f.deleted = append(f.deleted, name)
	return &sqs.DeleteQueueOutput{}, nil
}

func (f *fakeBus) ListSubscriptionsByTopic(_ context.Context, in *sns.ListSubscriptionsByTopicInput, _ ...func(*sns.Options)) (*sns.ListSubscriptionsByTopicOutput, error) {
	var out []snstypes.Subscription
	for arn, ep := range f.subs {
		out = append(out, snstypes.Subscription{SubscriptionArn: aws.String(arn), Endpoint: aws.String(ep), Protocol: aws.String("sqs"), TopicArn: in.TopicArn})
	}
	return &sns.ListSubscriptionsByTopicOutput{Subscriptions: out}, nil
}

func (f *fakeBus) Unsubscribe(_ context.Context, in *sns.UnsubscribeInput, _ ...func(*sns.Options)) (*sns.UnsubscribeOutput, error) {
	if f.failUnsubscribe {
		return nil, errors.New("AuthorizationError: not authorized")
	}
	delete(f.subs, aws.ToString(in.SubscriptionArn))
	return &sns.UnsubscribeOutput{}, nil
}

func (f *fakeBus) Subscribe(context.Context, *sns.SubscribeInput, ...func(*sns.Options)) (*sns.SubscribeOutput, error) {
	panic("the sweep never subscribes")
}

func (f *fakeBus) add(name string, tags map[string]string) {
	f.queues[name] = tags
	f.subs["sub-"+name] = fakeARN(name)
}

// TestSweepRaces: an orphan whose instance comes back between the sweep's two reads of its
// tag keeps its queue; an orphan whose subscription cannot be removed keeps its queue too
// (a subscription left behind would feed the next queue of the name), and the sweep says
// so with ErrUnavailable; a queue of the prefix tagged for another site is left alone.
func TestSweepRaces(t *testing.T) {
	now := time.Now()
	old := now.Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	tags := func(site, id, seen string) map[string]string {
		return map[string]string{tagSite: site, tagInstance: id, tagLastSeen: seen}
	}
	back := InstanceQueueName("eu", "back")
	gone := InstanceQueueName("eu", "gone")
	other := "sessionha-eu-reply-x-ops" // site "eu-reply-x"'s queue, under eu's prefix
	f := newFakeBus()
	f.add(back, tags("eu", "back", old))
	f.add(gone, tags("eu", "gone", old))
	f.add(other, tags("eu-reply-x", "", old))
	f.onSecondRead = func(name string) {
		if name == back {
			f.queues[back][tagLastSeen] = now.UTC().Format(time.RFC3339) // its instance is back
		}
	}
	report, err := sweepQueues(context.Background(), f, f, SweepOptions{Site: "eu", TopicARNs: []string{"topic"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]QueueState{}
	for _, r := range report {
		states[r.Name] = r.State
	}
	if states[back] != QueueAlive || states[gone] != QueueDeleted || states[other] != QueueSkipped {
		t.Fatalf("states %v: want %s alive (came back), %s deleted, %s skipped", states, back, gone, other)
	}
	if _, ok := f.queues[back]; !ok {
		t.Errorf("the queue of an instance that came back was deleted")
	}
	if _, ok := f.subs["sub-"+gone]; ok {
		t.Errorf("the deleted queue's subscription is left")
	}

	f = newFakeBus()
	f.add(gone, tags("eu", "gone", old))
	f.failUnsubscribe = true
	report, err = sweepQueues(context.Background(), f, f, SweepOptions{Site: "eu", TopicARNs: []string{"topic"}}, now)
	if !errors.Is(err, ErrUnavailable) || len(report) != 1 || report[0].State != QueueFailed || !strings.Contains(report[0].Reason, "unsubscribe") {
		t.Fatalf("sweep with Unsubscribe refused: %v, %+v; want ErrUnavailable and the queue failed, saying why", err, report)
	}
	if len(f.deleted) != 0 {
		t.Errorf("deleted %v although its subscription could not be removed", f.deleted)
	}
}
