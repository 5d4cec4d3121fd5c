// Package provision renders an infra/topology site as AWS SDK calls against the local
// emulators (or any AWS-compatible endpoint, such as LocalStack). Every step is
// idempotent: running it again on a provisioned site changes nothing and returns the
// same outputs.
package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/tablespec"
)

// DynamoDB is the part of the DynamoDB API the provisioner calls.
type DynamoDB interface {
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTimeToLive(context.Context, *dynamodb.DescribeTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// SNS is the part of the SNS API the provisioner calls.
type SNS interface {
	CreateTopic(context.Context, *sns.CreateTopicInput, ...func(*sns.Options)) (*sns.CreateTopicOutput, error)
	Subscribe(context.Context, *sns.SubscribeInput, ...func(*sns.Options)) (*sns.SubscribeOutput, error)
	ListSubscriptionsByTopic(context.Context, *sns.ListSubscriptionsByTopicInput, ...func(*sns.Options)) (*sns.ListSubscriptionsByTopicOutput, error)
	SetSubscriptionAttributes(context.Context, *sns.SetSubscriptionAttributesInput, ...func(*sns.Options)) (*sns.SetSubscriptionAttributesOutput, error)
}

// SQS is the part of the SQS API the provisioner calls.
type SQS interface {
	CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	SetQueueAttributes(context.Context, *sqs.SetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error)
}

// Outputs are the provisioned resources' identifiers, by topology ID.
type Outputs struct {
	Table     string
	TopicARNs map[string]string
	QueueURLs map[string]string
	QueueARNs map[string]string
}

// Apply creates whatever of t is missing and brings the rest to t's settings.
func Apply(ctx context.Context, t topology.Topology, db DynamoDB, bus SNS, q SQS) (Outputs, error) {
	out := Outputs{Table: t.Table.Name, TopicARNs: map[string]string{}, QueueURLs: map[string]string{}, QueueARNs: map[string]string{}}
	if err := table(ctx, db, t.Table); err != nil {
		return out, fmt.Errorf("provision table %s: %w", t.Table.Name, err)
	}
	for _, tp := range t.Topics {
		res, err := bus.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(tp.Name)})
		if err != nil {
			return out, fmt.Errorf("provision topic %s: %w", tp.Name, err)
		}
		out.TopicARNs[tp.ID] = aws.ToString(res.TopicArn)
	}
	// Dead-letter queues first: a source queue's redrive policy names its DLQ's ARN.
	for pass := 0; pass < 2; pass++ {
		for _, qu := range t.Queues {
			if (qu.DLQ == "") != (pass == 0) {
				continue
			}
			if err := queue(ctx, q, qu, &out); err != nil {
				return out, fmt.Errorf("provision queue %s: %w", qu.Name, err)
			}
		}
	}
	for _, s := range t.Subscriptions {
		if err := subscribe(ctx, bus, s, out); err != nil {
			return out, fmt.Errorf("provision subscription %s -> %s: %w", s.Topic, s.Queue, err)
		}
	}
	return out, nil
}

// table creates the table, or checks and completes it, as sessionctl create-store does.
func table(ctx context.Context, db DynamoDB, t topology.Table) error {
	spec := tablespec.Spec{Name: t.Name, PartitionKey: t.PartitionKey, TTLAttribute: t.TTLAttribute}
	for _, ix := range t.Indexes {
		spec.Indexes = append(spec.Indexes, tablespec.Index{Name: ix.Name, PartitionKey: ix.PartitionKey, SortKey: ix.SortKey, Include: ix.Include})
	}
	_, err := tablespec.Ensure(ctx, db, spec)
	return err
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

func queue(ctx context.Context, q SQS, qu topology.Queue, out *Outputs) error {
	attrs := map[string]string{
		string(sqstypes.QueueAttributeNameVisibilityTimeout):      seconds(qu.VisibilityTimeout),
		string(sqstypes.QueueAttributeNameMessageRetentionPeriod): seconds(qu.Retention),
	}
	if qu.DLQ != "" {
		dlqARN, ok := out.QueueARNs[qu.DLQ]
		if !ok {
			return fmt.Errorf("its DLQ %q is not in the topology", qu.DLQ)
		}
		policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": qu.MaxReceiveCount})
		attrs[string(sqstypes.QueueAttributeNameRedrivePolicy)] = string(policy)
	}
	res, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(qu.Name)})
	if err != nil {
		return err
	}
	url := aws.ToString(res.QueueUrl)
	// Set attributes separately: CreateQueue refuses an existing queue with other attributes,
	// and a re-run must bring an existing queue to the topology's settings.
	if _, err := q.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return err
	}
	got, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return err
	}
	out.QueueURLs[qu.ID] = url
	out.QueueARNs[qu.ID] = got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	return nil
}

func subscribe(ctx context.Context, bus SNS, s topology.Subscription, out Outputs) error {
	topicARN, queueARN := out.TopicARNs[s.Topic], out.QueueARNs[s.Queue]
	if topicARN == "" || queueARN == "" {
		return errors.New("topic or queue not in the topology")
	}
	attrs := map[string]string{"RawMessageDelivery": strconv.FormatBool(s.RawDelivery)}
	if s.FilterPolicy != "" {
		attrs["FilterPolicy"] = s.FilterPolicy
	}
	// SNS answers an identical Subscribe with the existing subscription; look first anyway,
	// since an emulator may not, and a duplicate would deliver every message twice.
	var next *string
	for {
		l, err := bus.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN), NextToken: next})
		if err != nil {
			return err
		}
		for _, sub := range l.Subscriptions {
			if aws.ToString(sub.Protocol) == "sqs" && aws.ToString(sub.Endpoint) == queueARN {
				// Bring an existing subscription to the topology's settings.
				for name, value := range attrs {
					if _, err := bus.SetSubscriptionAttributes(ctx, &sns.SetSubscriptionAttributesInput{
						SubscriptionArn: sub.SubscriptionArn, AttributeName: aws.String(name), AttributeValue: aws.String(value),
					}); err != nil {
						return err
					}
				}
				return nil
			}
		}
		if next = l.NextToken; next == nil {
			break
		}
	}
	_, err := bus.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"), Endpoint: aws.String(queueARN),
		Attributes: attrs, ReturnSubscriptionArn: true,
	})
	return err
}
