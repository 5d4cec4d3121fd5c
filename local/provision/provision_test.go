package provision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/provision"
)

var (
	db  *dynamodb.Client
	bus *sns.Client
	q   *sqs.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	var stopDB, stopBus func()
	var err error
	if db, stopDB, err = localtest.DynamoDB(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopDB()
	if bus, q, stopBus, err = localtest.Bus(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopBus()
	return m.Run()
}

// TestApplyIsIdempotent renders a site twice and checks what the topology asks for.
func TestApplyIsIdempotent(t *testing.T) {
	ctx := context.Background()
	topo, err := topology.For(topology.Site{Name: "prov", Region: "us-east-1"}, "prov-sessions")
	if err != nil {
		t.Fatal(err)
	}
	first, err := provision.Apply(ctx, topo, db, bus, q)
	if err != nil {
		t.Fatal(err)
	}
	second, err := provision.Apply(ctx, topo, db, bus, q)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("outputs differ between runs:\n%+v\n%+v", first, second)
	}

	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("prov-sessions")})
	if err != nil || aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "expiresAt" {
		t.Fatalf("TTL: %+v %v", ttl, err)
	}
	for _, tp := range topo.Topics {
		subs, err := bus.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(first.TopicARNs[tp.ID])})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, s := range topo.Subscriptions {
			if s.Topic == tp.ID {
				want++
			}
		}
		if len(subs.Subscriptions) != want {
			t.Errorf("topic %s has %d subscriptions after two runs, want %d", tp.ID, len(subs.Subscriptions), want)
		}
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(first.QueueURLs[topology.QueueOps]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("redrive policy %q: %v", attrs.Attributes["RedrivePolicy"], err)
	}
	if redrive.DeadLetterTargetArn != first.QueueARNs[topology.QueueOpsDLQ] || fmt.Sprint(redrive.MaxReceiveCount) != "20" {
		t.Errorf("ops queue redrive %+v, want the ops DLQ after 20 receives (the default)", redrive)
	}
	if attrs.Attributes["VisibilityTimeout"] != "60" {
		t.Errorf("visibility timeout %s, want 60 (6 × the 10 s function timeout)", attrs.Attributes["VisibilityTimeout"])
	}
}
