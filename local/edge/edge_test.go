package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/emulator"
)

// Shared by every test: started once in TestMain, because fauxqs takes a second or two
// to start. Tests that set faults clear them before returning.
var (
	ddbEndpoint    string
	fauxqsEndpoint string
	gw             *Gateway
	srv            *Server
	ddbc           *dynamodb.Client
	snsc           *sns.Client
	sqsc           *sqs.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run keeps the deferred stops ahead of os.Exit, so the emulators stop even when
// tests fail (and they die with us anyway if we are killed).
func run(m *testing.M) int {
	ctx := context.Background()
	replica := dynamo.New(dynamo.Options{})
	defer replica.Close()
	ddb, err := replica.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge tests need the local DynamoDB:", err)
		return 1
	}
	defer ddb.Close()
	fq, err := emulator.StartFauxqs(ctx, emulator.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge tests need fauxqs:", err)
		return 1
	}
	defer fq.Stop()
	ddbEndpoint, fauxqsEndpoint = ddb.URL(), fq.Endpoint

	gw, err = New(map[string]string{"dynamodb": ddbEndpoint, "sns": fq.Endpoint, "sqs": fq.Endpoint})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err = Listen("127.0.0.1:0", gw)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()

	// Configured only as a user of the local stack would: one endpoint, dummy keys.
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	ddbc = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(srv.URL())
		// DisableValidateResponseChecksum stays false on purpose: DynamoDB's
		// X-Amz-Crc32 check proves the edge passes response bodies byte for byte.
	})
	snsc = sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(srv.URL()) })
	sqsc = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(srv.URL()) })
	return m.Run()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func oneAttemptSNS(o *sns.Options)           { o.RetryMaxAttempts = 1 }
func oneAttemptSQS(o *sqs.Options)           { o.RetryMaxAttempts = 1 }
func oneAttemptDynamoDB(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }

func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

func createTopic(t *testing.T) string {
	t.Helper()
	out, err := snsc.CreateTopic(ctxT(t), &sns.CreateTopicInput{Name: aws.String(uniq("edge-topic"))})
	if err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	return *out.TopicArn
}

func publish(ctx context.Context, topic, msg string, opts ...func(*sns.Options)) error {
	_, err := snsc.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(msg)}, opts...)
	return err
}

func statusOf(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestDynamoDBThroughEdge(t *testing.T) {
	ctx := ctxT(t)
	before := gw.Stats()["dynamodb"]
	table := uniq("edge-table")
	_, err := ddbc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	// Big enough that a mangled or truncated body would fail the CRC32 check.
	payload := strings.Repeat("session-data ", 20000)
	_, err = ddbc.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]ddbtypes.AttributeValue{
			"pk":   &ddbtypes.AttributeValueMemberS{Value: "s1"},
			"data": &ddbtypes.AttributeValueMemberS{Value: payload},
		},
	})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	out, err := ddbc.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "s1"}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	got, ok := out.Item["data"].(*ddbtypes.AttributeValueMemberS)
	if !ok || got.Value != payload {
		t.Fatalf("GetItem returned %d-byte item, want the %d-byte payload back", len(fmt.Sprint(out.Item["data"])), len(payload))
	}
	if after := gw.Stats()["dynamodb"]; after < before+3 {
		t.Errorf("Stats()[dynamodb] went from %d to %d after 3 calls", before, after)
	}
}

func TestSNSToSQSFanOut(t *testing.T) {
	ctx := ctxT(t)
	topic := createTopic(t)
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(uniq("edge-queue"))})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	_, err = snsc.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn:   aws.String(topic),
		Protocol:   aws.String("sqs"),
		Endpoint:   aws.String(attrs.Attributes["QueueArn"]),
		Attributes: map[string]string{"RawMessageDelivery": "true"},
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	msg := `{"session":"s1","seq":1}`
	if err := publish(ctx, topic, msg); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// A long poll: it only returns early if the edge flushes the answer through.
	recv, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: q.QueueUrl, WaitTimeSeconds: 10, MaxNumberOfMessages: 1,
	})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if len(recv.Messages) != 1 || aws.ToString(recv.Messages[0].Body) != msg {
		t.Fatalf("ReceiveMessage got %d messages (first %q), want the published %q", len(recv.Messages), firstBody(recv.Messages), msg)
	}
	if _, err := sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: recv.Messages[0].ReceiptHandle}); err != nil {
		t.Errorf("DeleteMessage: %v", err)
	}
	st := gw.Stats()
	if st["sns"] == 0 || st["sqs"] == 0 {
		t.Errorf("Stats() = %v, want sns and sqs requests counted", st)
	}
}

// Queue URLs must lead back through the edge, or clients that use them bypass it.
// fauxqs builds them from the Host header, which the edge passes through.
func TestQueueURLPointsAtEdge(t *testing.T) {
	q, err := sqsc.CreateQueue(ctxT(t), &sqs.CreateQueueInput{QueueName: aws.String(uniq("edge-url"))})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	qu, err := url.Parse(*q.QueueUrl)
	if err != nil {
		t.Fatalf("CreateQueue returned QueueUrl %q: %v", *q.QueueUrl, err)
	}
	_, edgePort, _ := net.SplitHostPort(srv.Addr())
	if qu.Port() != edgePort {
		t.Fatalf("CreateQueue returned QueueUrl %q: port is not the edge's %s (is the Host header passed through?)", *q.QueueUrl, edgePort)
	}
	if qu.Host != srv.Addr() {
		t.Fatalf("CreateQueue returned QueueUrl %q, want one on the edge's host:port %s "+
			"(fauxqs names the host sqs.REGION.localhost unless its SqsStore host is \"\"; see local/fauxqs.mjs)",
			*q.QueueUrl, srv.Addr())
	}
}

func firstBody(ms []sqstypes.Message) string {
	if len(ms) == 0 {
		return ""
	}
	return aws.ToString(ms[0].Body)
}

func TestFaultRefuse(t *testing.T) {
	topic := createTopic(t)
	gw.SetFault("sns", FaultRefuse)
	defer gw.SetFault("sns", FaultNone)
	before := gw.Stats()["sns"]

	err := publish(ctxT(t), topic, "refused", oneAttemptSNS)
	if err == nil {
		t.Fatal("Publish succeeded under FaultRefuse")
	}
	var apiErr smithy.APIError
	if statusOf(err) != http.StatusServiceUnavailable || !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ServiceUnavailable" {
		t.Fatalf("Publish under FaultRefuse: got %v, want HTTP 503 ServiceUnavailable", err)
	}
	if after := gw.Stats()["sns"]; after != before {
		t.Errorf("a refused request was counted as forwarded (%d -> %d)", before, after)
	}
	// Every SDK retry is refused too (backoff shortened to keep the test quick).
	err = publish(ctxT(t), topic, "refused", func(o *sns.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.MaxBackoff = 10 * time.Millisecond
		})
	})
	var maxErr *retry.MaxAttemptsError
	if statusOf(err) != http.StatusServiceUnavailable || !errors.As(err, &maxErr) || maxErr.Attempt != 3 {
		t.Fatalf("Publish with 3 attempts under FaultRefuse: got %v, want 503 after 3 attempts", err)
	}

	// Only sns is cut off.
	if _, err := ddbc.ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("DynamoDB failed while only sns was refused: %v", err)
	}
	if _, err := sqsc.ListQueues(ctxT(t), &sqs.ListQueuesInput{}); err != nil {
		t.Fatalf("SQS failed while only sns was refused: %v", err)
	}
	gw.SetFault("sns", FaultNone)
	if err := publish(ctxT(t), topic, "healed"); err != nil {
		t.Fatalf("Publish after clearing FaultRefuse: %v", err)
	}
}

func TestFaultRefuseJSONProtocol(t *testing.T) {
	gw.SetFault("dynamodb", FaultRefuse)
	defer gw.SetFault("dynamodb", FaultNone)
	_, err := ddbc.ListTables(ctxT(t), &dynamodb.ListTablesInput{}, oneAttemptDynamoDB)
	var apiErr smithy.APIError
	if statusOf(err) != http.StatusServiceUnavailable || !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ServiceUnavailable" {
		t.Fatalf("ListTables under FaultRefuse: got %v, want HTTP 503 ServiceUnavailable", err)
	}
	if !strings.Contains(apiErr.ErrorMessage(), "dynamodb") {
		t.Errorf("error message %q does not name the service", apiErr.ErrorMessage())
	}
}

// waitHolding waits until n requests are held by a blackhole.
func waitHolding(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gw.holding.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests held by the blackhole, want %d", gw.holding.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFaultBlackhole(t *testing.T) {
	topic := createTopic(t)
	gw.SetFault("sns", FaultBlackhole)
	defer gw.SetFault("sns", FaultNone)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := publish(ctx, topic, "into the void")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with a 500ms deadline under FaultBlackhole: got %v, want a deadline error", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("blackholed Publish failed after %s, before its 500ms deadline", d)
	}
	// The edge notices the client hung up and lets go of the request.
	waitHolding(t, 0)

	if _, err := ddbc.ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("DynamoDB failed while only sns was blackholed: %v", err)
	}
	gw.SetFault("sns", FaultNone)
	if err := publish(ctxT(t), topic, "healed"); err != nil {
		t.Fatalf("Publish after clearing FaultBlackhole: %v", err)
	}
}

// A held request is answered 503 as soon as the fault is cleared.
func TestFaultBlackholeReleasedOnClear(t *testing.T) {
	topic := createTopic(t)
	gw.SetFault("sns", FaultBlackhole)
	defer gw.SetFault("sns", FaultNone)
	errc := make(chan error, 1)
	go func() { errc <- publish(ctxT(t), topic, "held", oneAttemptSNS) }()
	waitHolding(t, 1)
	gw.SetFault("sns", FaultNone)
	select {
	case err := <-errc:
		if statusOf(err) != http.StatusServiceUnavailable {
			t.Fatalf("held Publish after clearing the fault: got %v, want 503", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held Publish was not released when the fault was cleared")
	}
}

// Server.Close must not hang on, or leave behind, blackholed requests.
func TestCloseReleasesBlackhole(t *testing.T) {
	s2, err := Listen("127.0.0.1:0", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	gw.SetFault("sqs", FaultBlackhole)
	defer gw.SetFault("sqs", FaultNone)
	c := sqs.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, func(o *sqs.Options) { o.BaseEndpoint = aws.String(s2.URL()); o.RetryMaxAttempts = 1 })
	errc := make(chan error, 1)
	go func() {
		_, err := c.ListQueues(ctxT(t), &sqs.ListQueuesInput{})
		errc <- err
	}()
	waitHolding(t, 1)
	closed := make(chan error, 1)
	go func() { closed <- s2.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with a blackholed request")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("blackholed ListQueues succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blackholed request not released by Close")
	}
	waitHolding(t, 0)
	if _, err := net.DialTimeout("tcp", s2.Addr(), time.Second); err == nil {
		t.Error("closed server still accepts connections")
	}
}

func TestFaultDrop(t *testing.T) {
	gw.SetFault("sqs", FaultDrop)
	defer gw.SetFault("sqs", FaultNone)
	_, err := sqsc.ListQueues(ctxT(t), &sqs.ListQueuesInput{}, oneAttemptSQS)
	if err == nil {
		t.Fatal("ListQueues succeeded under FaultDrop")
	}
	if code := statusOf(err); code != 0 {
		t.Fatalf("ListQueues under FaultDrop got an HTTP %d response (%v), want a connection error", code, err)
	}
	var opErr *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &opErr) {
		t.Fatalf("ListQueues under FaultDrop: got %v, want connection reset", err)
	}
	t.Logf("dropped: %v", err)
	if _, err := ddbc.ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("DynamoDB failed while only sqs was dropped: %v", err)
	}
	gw.SetFault("sqs", FaultNone)
	if _, err := sqsc.ListQueues(ctxT(t), &sqs.ListQueuesInput{}); err != nil {
		t.Fatalf("ListQueues after clearing FaultDrop: %v", err)
	}
}

func TestDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	gw.SetDelay("dynamodb", delay)
	defer gw.SetDelay("dynamodb", 0)
	start := time.Now()
	if _, err := ddbc.ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables with a delay: %v", err)
	}
	if d := time.Since(start); d < delay {
		t.Fatalf("ListTables with a %s delay took only %s", delay, d)
	}
	// A delay on one service does not slow another... (checked loosely: the call
	// must succeed; timing of other services is not asserted).
	if _, err := sqsc.ListQueues(ctxT(t), &sqs.ListQueuesInput{}); err != nil {
		t.Fatalf("ListQueues while dynamodb was delayed: %v", err)
	}
}

func rawRequest(t *testing.T, method, target string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp.StatusCode, string(b)
}

func TestUnknownService(t *testing.T) {
	before := gw.Stats()[Unroutable]
	code, body := rawRequest(t, "PUT", srv.URL()+"/bucket/key", map[string]string{
		"Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
	}, "x")
	want := `{"__type":"UnknownService","message":"edge: no emulator for service \"s3\" (routes: dynamodb, sns, sqs)"}`
	if code != http.StatusBadRequest || strings.TrimSpace(body) != want {
		t.Fatalf("s3 request: got %d %s, want 400 %s", code, body, want)
	}
	// Nothing to route by at all.
	code, body = rawRequest(t, "POST", srv.URL()+"/", nil, "{}")
	if code != http.StatusBadRequest || !strings.Contains(body, "UnknownService") {
		t.Fatalf("unsigned request without hints: got %d %s, want 400 UnknownService", code, body)
	}
	if after := gw.Stats()[Unroutable]; after != before+2 {
		t.Errorf("Stats()[unroutable] went from %d to %d, want +2", before, after)
	}
}

func TestUpstreamDown(t *testing.T) {
	port, err := emulator.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", port)
	g, err := New(map[string]string{"sns": dead, "dynamodb": ddbEndpoint})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen("127.0.0.1:0", g)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, body := rawRequest(t, "POST", s.URL()+"/", map[string]string{
		"Content-Type": "application/x-www-form-urlencoded",
	}, "Action=ListTopics&Version=2010-03-31")
	if code != http.StatusBadGateway || !strings.Contains(body, "sns emulator at "+dead) {
		t.Fatalf("request to a dead upstream: got %d %s, want 502 naming sns and %s", code, body, dead)
	}

	code, body = rawRequest(t, "GET", s.URL()+HealthPath, nil, "")
	var h map[string]string
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("health body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || h["dynamodb"] != "ok" || h["sns"] == "ok" || h["sns"] == "" {
		t.Fatalf("health with sns down: got %d %v, want 503 with dynamodb ok and an sns error", code, h)
	}
}

func TestHealth(t *testing.T) {
	code, body := rawRequest(t, "GET", srv.URL()+HealthPath, nil, "")
	var h map[string]string
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("health body %q: %v", body, err)
	}
	if code != http.StatusOK || len(h) != 3 || h["dynamodb"] != "ok" || h["sns"] != "ok" || h["sqs"] != "ok" {
		t.Fatalf("health: got %d %v, want 200 with dynamodb, sns and sqs ok", code, h)
	}
}

// Unsigned requests are routed by X-Amz-Target or Action, and a peeked form body
// still reaches the emulator whole.
func TestUnsignedRouting(t *testing.T) {
	st := gw.Stats()
	code, body := rawRequest(t, "POST", srv.URL()+"/", map[string]string{
		"X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0",
	}, "{}")
	if strings.Contains(body, "UnknownService") || gw.Stats()["dynamodb"] != st["dynamodb"]+1 {
		t.Fatalf("unsigned DynamoDB request: got %d %s, not routed to dynamodb", code, body)
	}
	code, body = rawRequest(t, "POST", srv.URL()+"/", map[string]string{
		"X-Amz-Target": "DynamoDBStreams_20120810.ListStreams", "Content-Type": "application/x-amz-json-1.0",
	}, "{}")
	if strings.Contains(body, "UnknownService") || gw.Stats()["dynamodb"] != st["dynamodb"]+2 {
		t.Fatalf("unsigned DynamoDB Streams request: got %d %s, not routed to dynamodb", code, body)
	}
	code, body = rawRequest(t, "POST", srv.URL()+"/", map[string]string{
		"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0",
	}, "{}")
	if code != http.StatusOK || gw.Stats()["sqs"] != st["sqs"]+1 {
		t.Fatalf("unsigned SQS request: got %d %s, not routed to sqs", code, body)
	}

	// A form body longer than the peek limit, with Action first as SDKs send it.
	topic := createTopic(t)
	st = gw.Stats()
	msg := strings.Repeat("0123456789", 5000) // 50 KB > peekLimit
	form := url.Values{"Action": {"Publish"}, "Version": {"2010-03-31"}, "TopicArn": {topic}, "Message": {msg}}
	code, body = rawRequest(t, "POST", srv.URL()+"/", map[string]string{
		"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
	}, "Action=Publish&"+form.Encode())
	if code != http.StatusOK || !strings.Contains(body, "MessageId") || gw.Stats()["sns"] != st["sns"]+1 {
		t.Fatalf("unsigned SNS Publish of %d bytes: got %d %.300s, want 200 from sns", len(msg), code, body)
	}

	// Presigned-URL style: the credential scope is in the query.
	st = gw.Stats()
	q := url.Values{"Action": {"ListTopics"}, "Version": {"2010-03-31"}, "X-Amz-Credential": {"test/20250101/us-east-1/sns/aws4_request"}}
	rawRequest(t, "GET", srv.URL()+"/?"+q.Encode(), nil, "")
	if gw.Stats()["sns"] != st["sns"]+1 {
		t.Fatalf("presigned request was not routed to sns: stats %v -> %v", st, gw.Stats())
	}
}

func TestServiceOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		query  string
		body   string
		want   string
	}{
		{"sigv4", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab"}, "", "", "dynamodb"},
		{"sigv4 no spaces", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/sqs/aws4_request,SignedHeaders=host,Signature=ab"}, "", "", "sqs"},
		{"sigv4a", map[string]string{"Authorization": "AWS4-ECDSA-P256-SHA256 Credential=AKID/20250101/sns/aws4_request, SignedHeaders=host, Signature=ab"}, "", "", "sns"},
		{"signature wins over target", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/sts/aws4_request, Signature=ab", "X-Amz-Target": "AmazonSQS.ListQueues"}, "", "", "sts"},
		{"presigned", nil, "X-Amz-Credential=AKID%2F20250101%2Fus-east-1%2Fsqs%2Faws4_request", "", "sqs"},
		{"target sqs", map[string]string{"X-Amz-Target": "AmazonSQS.SendMessage"}, "", "", "sqs"},
		{"target unknown", map[string]string{"X-Amz-Target": "Kinesis_20131202.PutRecord"}, "", "", ""},
		{"form sns", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "", "Action=Publish&Message=x", "sns"},
		{"form sqs query protocol", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "", "Action=SendMessage&QueueUrl=x", "sqs"},
		{"form sts unsigned", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "", "Action=AssumeRoleWithWebIdentity", "sts"},
		{"form needs content type", nil, "", "Action=Publish", ""},
		{"nothing", nil, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := "http://127.0.0.1:4566/"
			if tc.query != "" {
				u += "?" + tc.query
			}
			r, err := http.NewRequest("POST", u, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if got := serviceOf(r); got != tc.want {
				t.Errorf("serviceOf = %q, want %q", got, tc.want)
			}
			rest, err := io.ReadAll(r.Body)
			if err != nil || string(rest) != tc.body {
				t.Errorf("body after serviceOf = %q, %v; want %q untouched", rest, err, tc.body)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, routes := range []map[string]string{
		nil,
		{"sns": ""},
		{"sns": "127.0.0.1:4566"},
		{"sns": "ftp://127.0.0.1:21"},
		{"sns": "http://"},
		{"sns": "http://127.0.0.1:1/?a=b"},
		{"": "http://127.0.0.1:1"},
		{"SNS": "http://127.0.0.1:1"},
		{Unroutable: "http://127.0.0.1:1"},
	} {
		if _, err := New(routes); err == nil {
			t.Errorf("New(%v) accepted an invalid route", routes)
		}
	}
}

func TestListenOnlyLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "[::1]:0", "127.0.0.1"} {
		s, err := Listen(addr, gw)
		if err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded, want it refused", addr)
		}
	}
	_, err := Listen("0.0.0.0:4566", gw)
	want := "edge: refusing to listen on 0.0.0.0:4566: only 127.0.0.1 is allowed"
	if err == nil || err.Error() != want {
		t.Errorf("Listen(0.0.0.0:4566) error = %v, want %q", err, want)
	}
}

func TestListenPortTaken(t *testing.T) {
	_, port, _ := net.SplitHostPort(srv.Addr())
	s, err := Listen(srv.Addr(), gw)
	if err == nil {
		s.Close()
		t.Fatalf("Listen on the taken %s succeeded", srv.Addr())
	}
	if !strings.Contains(err.Error(), "edge: port "+port+" is taken") {
		t.Fatalf("Listen on a taken port: got %v, want an error saying port %s is taken", err, port)
	}
}

// Faults and delays flip while requests are in flight: run under -race.
func TestFaultsChangeInFlight(t *testing.T) {
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		faults := []Fault{FaultRefuse, FaultBlackhole, FaultDrop, FaultNone}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			gw.SetFault("dynamodb", faults[i%len(faults)])
			gw.SetDelay("dynamodb", time.Duration(i%3)*time.Millisecond)
			_ = gw.Stats()
			time.Sleep(2 * time.Millisecond)
		}
	})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				_, _ = ddbc.ListTables(c, &dynamodb.ListTablesInput{}, oneAttemptDynamoDB)
				cancel()
			}
		})
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	gw.SetFault("dynamodb", FaultNone)
	gw.SetDelay("dynamodb", 0)
	waitHolding(t, 0)
	if _, err := ddbc.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables after the faults were cleared: %v", err)
	}
}

// BenchmarkEdge compares a small DynamoDB call through the edge with the same call
// straight to DynamoDB Local, to show what the extra hop costs.
func BenchmarkEdge(b *testing.B) {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	direct := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(ddbEndpoint) })
	for _, bc := range []struct {
		name string
		c    *dynamodb.Client
	}{{"direct", direct}, {"edge", ddbc}} {
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.c.ListTables(context.Background(), &dynamodb.ListTablesInput{Limit: aws.Int32(1)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestHandleLocal: a path under /_local/ is answered by its handler, never forwarded;
// other paths still reach the emulators; bad paths are refused.
func TestHandleLocal(t *testing.T) {
	if err := gw.Handle("/_local/ping", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong")
	})); err != nil {
		t.Fatal(err)
	}
	before := gw.Stats()
	resp, err := http.Get(srv.URL() + "/_local/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "pong" {
		t.Errorf("GET /_local/ping: %d %q, want 200 pong", resp.StatusCode, body)
	}
	if after := gw.Stats(); after[Unroutable] != before[Unroutable] {
		t.Errorf("a local path was routed as a service request: %v -> %v", before, after)
	}
	// A /_local/ path with no handler is not the gateway's: routed like any request.
	resp, err = http.Get(srv.URL() + "/_local/none")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /_local/none: %d, want 400 (no route)", resp.StatusCode)
	}
	for _, bad := range []string{"/metrics", "/_local/", "_local/x"} {
		if err := gw.Handle(bad, http.NotFoundHandler()); err == nil {
			t.Errorf("Handle(%q) accepted", bad)
		}
	}
}
