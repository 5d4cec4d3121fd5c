package client

import (
	"context"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/sns"
)

// regionalSNS sends each SNS call about a topic or a subscription to the region in its
// ARN. SNS answers a call about a topic only in the topic's region, and an instance
// subscribes its queue to every site's notice topic, some in other regions (a
// cross-region subscription is made in the topic's region). Publishing is not routed:
// an instance publishes to its own site's topics only, with the store's own client.
type regionalSNS struct {
	cfg  aws.Config  // the store's: credentials, endpoints; its Region is home
	home *sns.Client // the store's client, for calls in its region

	mu sync.Mutex
	by map[string]*sns.Client // other regions' clients, made on first use
}

func newRegionalSNS(cfg aws.Config, home *sns.Client) *regionalSNS {
	return &regionalSNS{cfg: cfg, home: home, by: map[string]*sns.Client{}}
}

// in returns the client for the region of resource, an ARN; home if it names none.
func (r *regionalSNS) in(resource string) *sns.Client {
	region := arnRegion(resource)
	if region == "" || region == r.cfg.Region {
		return r.home
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.by[region]
	if c == nil {
		// Endpoints as the store's (AWS_ENDPOINT_URL and the like stay: the local stack's
		// edge routes by the region a request is signed for).
		c = sns.NewFromConfig(r.cfg, func(o *sns.Options) { o.Region = region })
		r.by[region] = c
	}
	return c
}

func (r *regionalSNS) Subscribe(ctx context.Context, in *sns.SubscribeInput, o ...func(*sns.Options)) (*sns.SubscribeOutput, error) {
	return r.in(aws.ToString(in.TopicArn)).Subscribe(ctx, in, o...)
}

func (r *regionalSNS) Unsubscribe(ctx context.Context, in *sns.UnsubscribeInput, o ...func(*sns.Options)) (*sns.UnsubscribeOutput, error) {
	return r.in(aws.ToString(in.SubscriptionArn)).Unsubscribe(ctx, in, o...)
}

func (r *regionalSNS) ListSubscriptionsByTopic(ctx context.Context, in *sns.ListSubscriptionsByTopicInput, o ...func(*sns.Options)) (*sns.ListSubscriptionsByTopicOutput, error) {
	return r.in(aws.ToString(in.TopicArn)).ListSubscriptionsByTopic(ctx, in, o...)
}

func (r *regionalSNS) GetTopicAttributes(ctx context.Context, in *sns.GetTopicAttributesInput, o ...func(*sns.Options)) (*sns.GetTopicAttributesOutput, error) {
	return r.in(aws.ToString(in.TopicArn)).GetTopicAttributes(ctx, in, o...)
}

// arnRegion is the region an ARN names, "" if it is not an ARN or names none.
func arnRegion(s string) string {
	a, err := arn.Parse(s)
	if err != nil {
		return ""
	}
	return a.Region
}

// snsTopicARN reports whether s is the ARN of an SNS topic: arn:PARTITION:sns:REGION:ACCOUNT:NAME.
func snsTopicARN(s string) bool {
	a, err := arn.Parse(s)
	return err == nil && a.Service == "sns" && a.Region != "" && a.AccountID != "" && a.Resource != ""
}

// enabledByDefault are the regions of the aws partition that SNS does not count as opt-in
// for cross-region delivery (its developer guide, "Sending Amazon SNS messages to an
// Amazon SQS queue or AWS Lambda function in a different Region": the regions launched
// before 20 March 2019, Osaka aside, which it lists as opt-in). A closed list: every
// newer region is opt-in.
var enabledByDefault = []string{
	"us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
	"eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
	"ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2",
}

// snsPrincipals are the service principals that deliver from topics to a queue in
// queueRegion: SNS's, and for a topic in an opt-in region of the aws partition that is
// not the queue's, SNS's principal of that region, which a queue policy must name
// (the same guide).
func snsPrincipals(queueRegion string, topics []string) []string {
	ps := []string{"sns.amazonaws.com"}
	for _, t := range topics {
		a, err := arn.Parse(t)
		if err != nil || a.Partition != "aws" || a.Region == queueRegion || slices.Contains(enabledByDefault, a.Region) {
			continue
		}
		if p := "sns." + a.Region + ".amazonaws.com"; !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps
}
