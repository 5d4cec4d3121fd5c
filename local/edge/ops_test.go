package edge

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/local/dynamo"
)

// TestOpStats: the edge counts each operation of each service as the SDKs call it
// (DynamoDB and SQS by X-Amz-Target, SNS by the form's Action, which it peeks at without
// changing what the emulator gets), with the 64 KB chunks SQS and SNS bill and the empty
// receives.
func TestOpStats(t *testing.T) {
	ctx := ctxT(t)
	replica := dynamo.New(dynamo.Options{Region: "us-east-1"})
	t.Cleanup(replica.Close)
	ls, err := replica.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })

	// A stand-in for fauxqs: SNS answers a publish after checking that it got the whole
	// form; SQS answers the first receive with nothing and the second with a message of
	// 70 KB.
	var receives atomic.Int64
	big := strings.Repeat("x", 70<<10)
	var snsBody atomic.Value
	bus := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.") {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			if receives.Add(1) == 1 {
				_, _ = w.Write([]byte(`{}`))
				return
			}
			b, _ := json.Marshal(map[string]any{"Messages": []map[string]string{{"MessageId": "m", "ReceiptHandle": "h", "Body": big}}})
			_, _ = w.Write(b)
			return
		}
		b, _ := io.ReadAll(r.Body)
		snsBody.Store(string(b))
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write([]byte(`<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m</MessageId></PublishResult></PublishResponse>`))
	}))
	t.Cleanup(bus.Close)
	g, err := NewGateway(Options{Routes: []Route{{Service: "dynamodb", URL: ls.URL()}, {Service: "sns", URL: bus.URL}, {Service: "sqs", URL: bus.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(s.URL())}

	db := dynamodb.NewFromConfig(cfg)
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("ops"),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	key := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "k"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("ops"), Item: key}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("ops"), Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	msg := strings.Repeat("m", 100<<10) // two chunks
	if _, err := sns.NewFromConfig(cfg).Publish(ctx, &sns.PublishInput{TopicArn: aws.String("arn:aws:sns:us-east-1:000000000000:t"), Message: aws.String(msg)}); err != nil {
		t.Fatal(err)
	}
	form, _ := url.ParseQuery(snsBody.Load().(string))
	if form.Get("Action") != "Publish" || form.Get("Message") != msg {
		t.Fatalf("the emulator got a publish of action %q and a message of %d bytes, want Publish and %d: the peek changed the body", form.Get("Action"), len(form.Get("Message")), len(msg))
	}
	q := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.DisableMessageChecksumValidation = true })
	for range 2 {
		if _, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(bus.URL + "/000000000000/q")}); err != nil {
			t.Fatal(err)
		}
	}

	got := g.OpStats()
	for op, want := range map[string]OpCount{
		"dynamodb CreateTable": {Calls: 1, Chunks: 1}, "dynamodb PutItem": {Calls: 1, Chunks: 1, Empty: 1}, // "{}" too "dynamodb GetItem": {Calls: 2, Chunks: 2},
		"sns Publish":        {Calls: 1, Chunks: 2},
		"sqs ReceiveMessage": {Calls: 2, Chunks: 1 + 2, Empty: 1},
	} {
		c := got[op]
		if c.Calls != want.Calls || c.Chunks != want.Chunks || c.Empty != want.Empty {
			t.Errorf("%s: %+v, want %d calls, %d chunks, %d empty", op, c, want.Calls, want.Chunks, want.Empty)
		}
	}
	if c := got["sns Publish"]; c.RequestBytes < int64(len(msg)) {
		t.Errorf("sns Publish: %d request bytes, want at least the message's %d", c.RequestBytes, len(msg))
	}
	if len(got) != 5 {
		t.Errorf("operations counted: %v, want the five called", got)
	}
}
