package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/internal/record"
)

// Start-up checks: Open fails at once, naming the resource, when the table, its per-user
// index or a topic it is configured with does not exist or these credentials may not use
// it, rather than at the first Load (a wrong table) or as degraded mode (a wrong topic).
// A check that gets no answer (the network, a throttle, a server failing) does not stop
// Open: an instance may start while the bus or the table is down, and degraded mode
// covers that.

// describer and topicReader are the parts of DynamoDB and SNS the checks call.
type describer interface {
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

type topicReader interface {
	GetTopicAttributes(context.Context, *sns.GetTopicAttributesInput, ...func(*sns.Options)) (*sns.GetTopicAttributesOutput, error)
}

// checkResources runs the checks at once and returns every refusal, joined.
func (s *Store) checkResources(ctx context.Context, db describer, bus topicReader, region string) error {
	ctx, cancel := context.WithTimeout(ctx, max(s.cfg.PublishTimeout, time.Second))
	defer cancel()
	type topic struct{ field, env, arn string }
	topics := []topic{{"OpsTopicARN", "SESSIONHA_OPS_TOPIC_ARN", s.cfg.OpsTopicARN}}
	if s.cfg.ReadPath == ReadBus {
		topics = append(topics, topic{"QueryTopicARN", "SESSIONHA_QUERY_TOPIC_ARN", s.cfg.QueryTopicARN},
			topic{"ReplyTopicARN", "SESSIONHA_REPLY_TOPIC_ARN", s.cfg.ReplyTopicARN})
	}
	if s.cfg.NoticeScope != NoticeOff {
		topics = append(topics, topic{"NoticeTopicARN", "SESSIONHA_NOTICE_TOPIC_ARN", s.cfg.NoticeTopicARN})
		for _, t := range s.cfg.NoticeTopicARNs { // every site's, each asked in its region
			if t != s.cfg.NoticeTopicARN {
				topics = append(topics, topic{"NoticeTopicARNs", "SESSIONHA_NOTICE_TOPIC_ARNS", t})
			}
		}
	}
	if s.cfg.LifecycleTopicARN != "" {
		topics = append(topics, topic{"LifecycleTopicARN", "SESSIONHA_LIFECYCLE_TOPIC_ARN", s.cfg.LifecycleTopicARN})
	}
	errs := make([]error, len(topics)+1)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = s.checkTable(ctx, db, region) })
	for i, t := range topics {
		wg.Go(func() {
			_, err := bus.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(t.arn)})
			errs[i+1] = s.refusal(err, fmt.Sprintf("%s (%s) %q", t.field, t.env, t.arn), "sns:GetTopicAttributes",
				map[string]string{"NotFound": "no such topic", "InvalidParameter": "not a topic ARN"})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkTable checks that the table exists, has the session table's key and the per-user
// index, and that these credentials may describe it.
func (s *Store) checkTable(ctx context.Context, db describer, region string) error {
	what := fmt.Sprintf("Table (SESSIONHA_TABLE) %q", s.cfg.Table)
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.cfg.Table)})
	var api smithy.APIError
	if s.cfg.ReadPath == ReadBus && errors.As(err, &api) && api.ErrorCode() == "AccessDeniedException" {
		// An instance that reads over the bus may have no table access at all.
		s.log.Info("the table cannot be described with these credentials; this instance reads over the bus", "table", s.cfg.Table)
		return nil
	}
	if err := s.refusal(err, what, "dynamodb:DescribeTable",
		map[string]string{"ResourceNotFoundException": "no such table in region " + region, "ValidationException": "not a valid table name"}); err != nil || out == nil || out.Table == nil {
		return err
	}
	t := out.Table
	var hash string
	for _, k := range t.KeySchema {
		if k.KeyType == ddbtypes.KeyTypeHash {
			hash = aws.ToString(k.AttributeName)
		}
	}
	if hash != "pk" {
		return fmt.Errorf("client: %s is not a session table: its partition key is %q, want \"pk\" (the table infra/ and local/ make)", what, hash)
	}
	for _, ix := range t.GlobalSecondaryIndexes {
		if aws.ToString(ix.IndexName) == record.IndexByPrincipal {
			return nil
		}
	}
	return fmt.Errorf("client: %s has no index %q, which List, Revoke, DestroyAll and MaxSessionsPerPrincipal read", what, record.IndexByPrincipal)
}

// refusal turns a check's error into Open's: nil for no error and for one that may pass
// by itself (logged), else an error naming the resource, what is wrong, and the action.
func (s *Store) refusal(err error, what, action string, meaning map[string]string) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if isTransient(err) || !errors.As(err, &api) {
		s.log.Warn("could not check a resource at Open; going on (the store degrades if it stays out of reach)", "resource", what, "reason", err.Error())
		return nil
	}
	code := api.ErrorCode()
	if m, ok := meaning[code]; ok {
		return fmt.Errorf("client: %s: %s (%s: %s)", what, m, action, code)
	}
	return fmt.Errorf("client: %s: these credentials may not use it (%s: %s: %s)", what, action, code, api.ErrorMessage())
}

// Instances open in this process: two Stores with one instance id would share its queue
// and its journal, and steal each other's replies and notices.
var instances = struct {
	sync.Mutex
	open map[string]bool
}{open: map[string]bool{}}

// claimInstance registers id as open in this process, or fails if it is.
func claimInstance(id string) error {
	instances.Lock()
	defer instances.Unlock()
	if instances.open[id] {
		return fmt.Errorf("client: InstanceID (SESSIONHA_INSTANCE_ID) %q is open in this process already (another Store): give each Store an instance id of its own, or Close the first", id)
	}
	instances.open[id] = true
	return nil
}

// releaseInstance frees id for another Open.
func releaseInstance(id string) {
	instances.Lock()
	defer instances.Unlock()
	delete(instances.open, id)
}
