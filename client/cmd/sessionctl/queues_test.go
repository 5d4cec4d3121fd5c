package main

import (
	"context"
	"errors"
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

// instanceQueue makes a queue as an instance of the site would have it: tagged (no tags
// if seen is zero) and subscribed to the reply and notice topics. It returns its ARN.
func instanceQueue(t *testing.T, name, id string, seen time.Time) string {
	t.Helper()
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	var tags map[string]string
	if !seen.IsZero() {
		tags = map[string]string{"sessionha:site": "local", "sessionha:instance": id, "sessionha:last-seen": seen.UTC().Format(time.RFC3339)}
	}
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
	for _, id := range []string{topology.TopicReply, topology.TopicNotice} {
		if _, err := sns.NewFromConfig(theSite.AWS).Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(theSite.Outputs.TopicARNs[id]),
			Protocol: aws.String("sqs"), Endpoint: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
	}
	return arn
}

func queueThere(t *testing.T, name string) bool {
	t.Helper()
	_, err := sqs.NewFromConfig(theSite.AWS).GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var gone *sqstypes.QueueDoesNotExist
	if err != nil && !errors.As(err, &gone) {
		t.Fatal(err)
	}
	return err == nil
}

func subscriptionsOf(t *testing.T, arn string) int {
	t.Helper()
	n := 0
	for _, id := range []string{topology.TopicReply, topology.TopicNotice} {
		out, err := sns.NewFromConfig(theSite.AWS).ListSubscriptionsByTopic(context.Background(), &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(theSite.Outputs.TopicARNs[id])})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range out.Subscriptions {
			if aws.ToString(s.Endpoint) == arn {
				n++
			}
		}
	}
	return n
}

// TestSweepQueues: sweep-queues lists the queues of instances not seen alive for longer
// than --older-than and deletes nothing without --yes; with --yes it deletes them and
// their subscriptions, and keeps live instances' queues and queues without the tags.
func TestSweepQueues(t *testing.T) {
	now := time.Now()
	gone := client.InstanceQueueName("local", "ctl-gone")
	goneARN := instanceQueue(t, gone, "ctl-gone", now.Add(-3*time.Hour))
	quiet := client.InstanceQueueName("local", "ctl-quiet")
	quietARN := instanceQueue(t, quiet, "ctl-quiet", now.Add(-40*time.Minute))
	live := client.InstanceQueueName("local", "ctl-live")
	liveARN := instanceQueue(t, live, "ctl-live", now.Add(-2*time.Minute))
	legacy := "sessionha-local-reply-ctl-legacy"
	instanceQueue(t, legacy, "", time.Time{})

	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"sweep-queues", "--older-than", "1m"}, 2, "at least 15m0s"},
		{[]string{"sweep-queues", "now"}, 2, "takes no arguments"},
		{[]string{"sweep-queues", "--older-than", "soon"}, 2, "invalid value"},
	} {
		if r := ctl(t, c.args...); r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
			t.Fatalf("%v: want exit %d and %q, got:\n%s", c.args, c.code, c.stderr, r)
		}
	}
	noTopic := envFile(t, map[string]string{"SESSIONHA_NOTICE_TOPIC_ARN": ""})
	if r := ctlIn(t, nil, "", "--env-file", noTopic, "sweep-queues"); r.code != 1 || !strings.Contains(r.stderr, "SESSIONHA_NOTICE_TOPIC_ARN is not set") {
		t.Fatalf("without the notice topic:\n%s", r)
	}
	if r := ctl(t, "help", "sweep-queues"); r.code != 0 || !strings.Contains(r.stdout, "--yes") || !strings.Contains(r.stdout, "dry run") {
		t.Fatalf("help sweep-queues:\n%s", r)
	}

	// A dry run: the orphan listed, nothing deleted.
	r := ctl(t, "sweep-queues")
	expect(t, r, 0, gone, "would delete", "dry run: ", "--yes", legacy, "skipped")
	if strings.Contains(r.stdout, quiet) || strings.Contains(r.stdout, live) {
		t.Fatalf("the dry run at the default threshold (1h) lists queues seen within the hour:\n%s", r)
	}
	if !queueThere(t, gone) || subscriptionsOf(t, goneARN) != 2 {
		t.Fatalf("a dry run deleted something:\n%s", r)
	}

	// For real, with a shorter threshold: both orphans go, with their subscriptions.
	r = ctl(t, "sweep-queues", "--older-than", "30m", "--yes")
	expect(t, r, 0, gone, quiet, "deleted 2 queues", "with 4 subscriptions")
	for _, name := range []string{gone, quiet} {
		if queueThere(t, name) {
			t.Errorf("queue %s is still there", name)
		}
	}
	for _, arn := range []string{goneARN, quietARN} {
		if n := subscriptionsOf(t, arn); n != 0 {
			t.Errorf("%d subscriptions left to %s", n, arn)
		}
	}
	if !queueThere(t, live) || !queueThere(t, legacy) || subscriptionsOf(t, liveARN) != 2 {
		t.Fatalf("sweep-queues removed a live instance's queue or an untagged one:\n%s", r)
	}
	r = ctl(t, "sweep-queues", "--older-than", "30m", "--yes")
	expect(t, r, 0, "deleted 0 queues")
}

// TestDestroyLeavesNoQueue: destroy publishes a notice through a store with notices, which
// makes a queue at Open; with an instance id the client made up, Close removes it, so
// that runs of sessionctl leave no queue behind for the sweep.
func TestDestroyLeavesNoQueue(t *testing.T) {
	ctx := context.Background()
	q := sqs.NewFromConfig(theSite.AWS)
	count := func() int {
		out, err := q.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(client.InstanceQueuePrefix("local")), MaxResults: aws.Int32(1000)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.QueueUrls)
	}
	a, b := openStore(t, "ctl-noq-a", ""), openStore(t, "ctl-noq-b", "")
	id := create(t, a, b, "hugo", nil)
	before := count()
	expect(t, ctl(t, "destroy", id), 0, "session destroyed")
	if after := count(); after != before {
		t.Fatalf("%d instance queues after sessionctl destroy, %d before: it left its queue", after, before)
	}
}
