package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/infra/topology"
)

// outageReceives is how many receives each op must fail before the table comes back:
// more than the 5 that dead-lettered a valid op before the retry schedule existed.
const outageReceives = 7

// TestTableOutage: valid ops published while the site's table is down are retried with
// backoff, not dead-lettered. The table stays down until every op has failed
// outageReceives times, then comes back: every op is applied, none is in the DLQ. (The
// test site's retry waits are a second or two, so that this takes seconds; the default
// schedule's coverage of a 30-minute outage is TestDefaultRetryCoversLongOutage's.)
func TestTableOutage(t *testing.T) {
	ctx := context.Background()
	if n := theSite.Topology.Site.Settings.MaxReceiveCount; n <= outageReceives {
		t.Fatalf("the site's maxReceiveCount is %d: the ops would be dead-lettered before the table is back", n)
	}
	region := theSite.AWS.Region
	if err := theSite.Stack.StopDynamoDB(region); err != nil {
		t.Fatal(err)
	}
	down, stopped := true, time.Now()
	t.Cleanup(func() {
		if down {
			_ = theSite.Stack.StartDynamoDB(region)
		}
	})

	logStart := len(fnLog.String())
	bus := sns.NewFromConfig(theSite.AWS)
	ids := map[string]string{} // session id -> op body
	for range 5 {
		id, body := validOp(t, "outage-test")
		ids[id] = body
		if _, err := bus.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(theSite.Outputs.TopicARNs[topology.TopicOps]), Message: aws.String(body)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	// Only these ops fail meanwhile (nothing else writes while the table is down).
	eventually(t, fmt.Sprintf("every op fails %d receives while the table is down", outageReceives), func() (bool, string) {
		failed := receivesFailed(fnLog.String()[logStart:])
		n := 0
		for _, c := range failed {
			if c >= outageReceives {
				n++
			}
		}
		return n == len(ids), fmt.Sprintf("receives failed per message: %v", failed)
	})
	if err := theSite.Stack.StartDynamoDB(region); err != nil {
		t.Fatal(err)
	}
	down = false
	t.Logf("the table was down for %s; receives failed per op: %v", time.Since(stopped).Round(time.Millisecond), receivesFailed(fnLog.String()[logStart:]))

	for id := range ids {
		eventually(t, "an op published during the outage is applied once the table is back", func() (bool, string) {
			return rawItem(t, id) != nil, "no item"
		})
	}
	// None of them was dead-lettered, even for a while.
	q := sqs.NewFromConfig(theSite.AWS)
	out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(theSite.Outputs.QueueURLs[topology.QueueOpsDLQ]),
		MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range out.Messages {
		for _, body := range ids {
			if aws.ToString(m.Body) == body {
				t.Errorf("an op of the outage is in the DLQ (attributes %v)", m.MessageAttributes)
			}
		}
	}
}

// receivesFailed reads the functions' log: for each message id, the highest receive count
// at which sessionop's apply failed.
func receivesFailed(log string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Msg, Function, MessageID string
			ReceiveCount             any
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "record failed" || l.Function != topology.FunctionSessionOp {
			continue
		}
		n, _ := strconv.Atoi(fmt.Sprint(l.ReceiveCount))
		out[l.MessageID] = max(out[l.MessageID], n)
	}
	return out
}
