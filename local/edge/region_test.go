package edge

import (
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestCrossRegionDelivery: a topic in one region delivers to a subscribed queue in
// another, through the edge and fauxqs, as SNS does on AWS (destroy notices with scope
// "all" cross sites this way): the subscription is made in the topic's region, the
// filter policy and raw delivery hold, and the queue's region receives the message with
// its attributes.
func TestCrossRegionDelivery(t *testing.T) {
	e := newRuled(t)
	eu := sns.NewFromConfig(aws.Config{Region: "eu-west-1", Credentials: e.sns.Options().Credentials},
		func(o *sns.Options) { o.BaseEndpoint = aws.String(e.s.URL()); o.RetryMaxAttempts = 1 })
	topic, err := eu.CreateTopic(ctxT(t), &sns.CreateTopicInput{Name: aws.String(uniq("eu-notice"))})
	if err != nil {
		t.Fatal(err)
	}
	topicARN := aws.ToString(topic.TopicArn)
	if arnRegion(topicARN) != "eu-west-1" {
		t.Fatalf("topic made in eu-west-1 has ARN %s", topicARN)
	}
	q := e.createQueue(t, uniq("us-inbox"), nil) // e's clients are in us-east-1
	attrs, err := e.sqs.GetQueueAttributes(ctxT(t), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	queueARN := attrs.Attributes["QueueArn"]
	if arnRegion(queueARN) != "us-east-1" {
		t.Fatalf("queue made in us-east-1 has ARN %s", queueARN)
	}
	sub := &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"), Endpoint: aws.String(queueARN),
		Attributes: map[string]string{"RawMessageDelivery": "true", "FilterPolicy": `{"site":["eu"]}`}}

	// Asked in the queue's region, SNS refuses: the topic is not there.
	_, err = e.sns.Subscribe(ctxT(t), sub)
	apiError(t, "Subscribe in the queue's region", err, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: TopicArn")
	_, err = e.sns.Publish(ctxT(t), &sns.PublishInput{TopicArn: aws.String(topicARN), Message: aws.String("x")})
	apiError(t, "Publish in another region", err, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: TopicArn")

	// Asked in the topic's region, it subscribes the other region's queue.
	if _, err := eu.Subscribe(ctxT(t), sub); err != nil {
		t.Fatalf("Subscribe in the topic's region: %v", err)
	}
	subs, err := eu.ListSubscriptionsByTopic(ctxT(t), &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN)})
	if err != nil || len(subs.Subscriptions) != 1 {
		t.Fatalf("ListSubscriptionsByTopic: %v %+v", err, subs)
	}
	_, err = e.sns.Unsubscribe(ctxT(t), &sns.UnsubscribeInput{SubscriptionArn: subs.Subscriptions[0].SubscriptionArn})
	apiError(t, "Unsubscribe in another region", err, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: SubscriptionArn")

	site := func(v string) map[string]snstypes.MessageAttributeValue {
		return map[string]snstypes.MessageAttributeValue{"site": {DataType: aws.String("String"), StringValue: aws.String(v)}}
	}
	for _, m := range []struct{ body, site string }{{"from-eu", "eu"}, {"from-us", "us"}} {
		if _, err := eu.Publish(ctxT(t), &sns.PublishInput{TopicArn: aws.String(topicARN), Message: aws.String(m.body), MessageAttributes: site(m.site)}); err != nil {
			t.Fatalf("Publish %s: %v", m.body, err)
		}
	}
	out, err := e.sqs.ReceiveMessage(ctxT(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), MaxNumberOfMessages: 10,
		WaitTimeSeconds: 2, MessageAttributeNames: []string{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "from-eu" ||
		aws.ToString(out.Messages[0].MessageAttributes["site"].StringValue) != "eu" {
		t.Fatalf("the us-east-1 queue received %+v, want the eu message alone, raw, with its site attribute", out.Messages)
	}
	if rest := e.drain(t, q); len(rest) != 0 {
		t.Errorf("the filter let through %q", rest)
	}
	if _, err := eu.Unsubscribe(ctxT(t), &sns.UnsubscribeInput{SubscriptionArn: subs.Subscriptions[0].SubscriptionArn}); err != nil {
		t.Errorf("Unsubscribe in the topic's region: %v", err)
	}
}

// TestRuleTopicRegionOffWithTheRules: the region rule is one of the AWS rules, off with
// them (fauxqs itself answers a call about a topic of another region).
func TestRuleTopicRegionOffWithTheRules(t *testing.T) {
	e := newRuled(t)
	e.g.EnforceAWSRules(false)
	eu := sns.NewFromConfig(aws.Config{Region: "eu-west-1", Credentials: e.sns.Options().Credentials},
		func(o *sns.Options) { o.BaseEndpoint = aws.String(e.s.URL()); o.RetryMaxAttempts = 1 })
	topic, err := eu.CreateTopic(ctxT(t), &sns.CreateTopicInput{Name: aws.String(uniq("eu-topic"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sns.Publish(ctxT(t), &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String("x")}); err != nil {
		t.Errorf("with the rules off, a Publish in another region: %v", err)
	}
}
