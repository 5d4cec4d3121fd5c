package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

var logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))

// Crashing at init, before the runtime loop, is how a bootstrap with a broken
// configuration behaves; the tests ask for it through the environment.
func init() {
	if os.Getenv("ECHOFN_CRASH_AT_INIT") != "" {
		fmt.Println("echofn: crashing at init as asked")
		os.Exit(2)
	}
}

// request is a direct invocation. Op says what to do:
// echo (return value), error (return an echoError), crash (exit 3), sleep (for Sleep),
// env (return the named variables), big (return Size bytes), panic.
type request struct {
	Op    string          `json:"op"`
	Value json.RawMessage `json:"value,omitempty"`
	Sleep string          `json:"sleep,omitempty"`
	Env   []string        `json:"env,omitempty"`
	Size  int             `json:"size,omitempty"`
}

type response struct {
	Echo         json.RawMessage   `json:"echo,omitempty"`
	RequestID    string            `json:"requestId"`
	FunctionARN  string            `json:"functionArn"`
	FunctionName string            `json:"functionName"`
	MemoryMB     int               `json:"memoryMB"`
	DeadlineIn   int64             `json:"deadlineInMs"`
	PID          int               `json:"pid"`
	Env          map[string]string `json:"env,omitempty"`
	Environ      []string          `json:"environ,omitempty"`
	Big          string            `json:"big,omitempty"`
}

type echoError struct{ msg string }

func (e *echoError) Error() string { return e.msg }

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records []events.SQSMessage `json:"Records"`
	}
	if json.Unmarshal(raw, &probe) == nil && len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:sqs" {
		return handleSQS(ctx, probe.Records)
	}
	if len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:dynamodb" {
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return handleStream(ctx, ev.Records)
	}
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, err
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	resp := response{
		RequestID:    lc.AwsRequestID,
		FunctionARN:  lc.InvokedFunctionArn,
		FunctionName: lambdacontext.FunctionName,
		MemoryMB:     lambdacontext.MemoryLimitInMB,
		DeadlineIn:   time.Until(deadline).Milliseconds(),
		PID:          os.Getpid(),
	}
	switch req.Op {
	case "echo":
		resp.Echo = req.Value
	case "error":
		return nil, &echoError{msg: "asked to fail"}
	case "panic":
		panic("asked to panic")
	case "crash":
		fmt.Println("echofn: crashing as asked")
		os.Exit(3)
	case "sleep":
		d, err := time.ParseDuration(req.Sleep)
		if err != nil {
			return nil, err
		}
		fmt.Println("echofn: sleeping", d)
		time.Sleep(d)
	case "env":
		resp.Env = map[string]string{}
		for _, k := range req.Env {
			if v, ok := os.LookupEnv(k); ok {
				resp.Env[k] = v
			}
		}
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			resp.Environ = append(resp.Environ, k)
		}
		sort.Strings(resp.Environ)
	case "big":
		resp.Big = strings.Repeat("x", req.Size)
	default:
		return nil, fmt.Errorf("unknown op %q", req.Op)
	}
	return resp, nil
}

// handleSQS processes a batch. By body: "fail..." is reported in batchItemFailures,
// "hide:SECONDS" too, after the function hides it for SECONDS itself
// (ChangeMessageVisibility on ECHOFN_QUEUE_URL, as sessionha's functions do to retry on
// a schedule), "error" fails the whole invocation, "crash" exits the process,
// "sleep:DURATION" sleeps; anything else succeeds. It logs one JSON line per record,
// without the body.
func handleSQS(ctx context.Context, records []events.SQSMessage) (events.SQSEventResponse, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	var resp events.SQSEventResponse
	var failBatch bool
	for _, r := range records {
		sum := md5.Sum([]byte(r.Body))
		attrs := make([]string, 0, len(r.Attributes))
		for k := range r.Attributes {
			attrs = append(attrs, k)
		}
		sort.Strings(attrs)
		mattrs := make([]string, 0, len(r.MessageAttributes))
		for k, v := range r.MessageAttributes {
			mattrs = append(mattrs, k+":"+v.DataType)
		}
		sort.Strings(mattrs)
		logger.Info("record",
			"requestId", lc.AwsRequestID,
			"messageId", r.MessageId,
			"receiveCount", r.Attributes["ApproximateReceiveCount"],
			"batchSize", len(records),
			"eventSource", r.EventSource,
			"eventSourceARN", r.EventSourceARN,
			"awsRegion", r.AWSRegion,
			"md5ok", hex.EncodeToString(sum[:]) == r.Md5OfBody,
			"receiptHandle", r.ReceiptHandle != "",
			"attributes", attrs,
			"messageAttributes", mattrs,
		)
		switch {
		case strings.HasPrefix(r.Body, "fail"):
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		case strings.HasPrefix(r.Body, "hide:"):
			secs, err := strconv.Atoi(strings.TrimPrefix(r.Body, "hide:"))
			if err != nil {
				return resp, err
			}
			err = hide(ctx, r.ReceiptHandle, int32(secs))
			logger.Info("hidden", "messageId", r.MessageId, "seconds", secs, "ok", err == nil, "error", fmt.Sprint(err))
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		case r.Body == "error":
			failBatch = true
		case r.Body == "crash":
			fmt.Println("echofn: crashing as asked")
			os.Exit(3)
		case strings.HasPrefix(r.Body, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(r.Body, "sleep:"))
			if err != nil {
				return resp, err
			}
			time.Sleep(d)
		}
	}
	if failBatch {
		return resp, &echoError{msg: "asked to fail the batch"}
	}
	return resp, nil
}

// hide changes the visibility timeout of a message of ECHOFN_QUEUE_URL, reached at
// AWS_ENDPOINT_URL with the environment's credentials.
func hide(ctx context.Context, receipt string, secs int32) error {
	c := sqs.New(sqs.Options{
		Region:       os.Getenv("AWS_REGION"),
		BaseEndpoint: aws.String(os.Getenv("AWS_ENDPOINT_URL")),
		Credentials:  credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
	})
	_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(os.Getenv("ECHOFN_QUEUE_URL")), ReceiptHandle: aws.String(receipt), VisibilityTimeout: secs,
	})
	return err
}

// handleStream processes a DynamoDB stream batch. By the attribute "do" of the record's
// new image (its old image's for a REMOVE): "fail" is reported in batchItemFailures;
// "failtimes:N" too, the first N times the record comes (counted in ECHOFN_STATE_DIR);
// "error" fails the whole invocation; "badreport" answers an item without an
// itemIdentifier. It logs one JSON line per record, with the attribute "v" of its image.
func handleStream(ctx context.Context, records []events.DynamoDBEventRecord) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	var resp events.DynamoDBEventResponse
	var failBatch, badReport bool
	for _, r := range records {
		img := r.Change.NewImage
		if img == nil {
			img = r.Change.OldImage
		}
		str := func(name string) string {
			if v, ok := img[name]; ok && v.DataType() == events.DataTypeString {
				return v.String()
			}
			return ""
		}
		identity := ""
		if r.UserIdentity != nil {
			identity = r.UserIdentity.Type + "/" + r.UserIdentity.PrincipalID
		}
		logger.Info("stream-record",
			"requestId", lc.AwsRequestID,
			"seq", r.Change.SequenceNumber,
			"eventName", r.EventName,
			"eventSource", r.EventSource,
			"eventSourceARN", r.EventSourceArn,
			"awsRegion", r.AWSRegion,
			"identity", identity,
			"pk", r.Change.Keys["pk"].String(),
			"hasOld", r.Change.OldImage != nil,
			"hasNew", r.Change.NewImage != nil,
			"v", str("v"),
			"at", r.Change.ApproximateCreationDateTime.Unix(),
			"viewType", r.Change.StreamViewType,
			"batchSize", len(records),
		)
		do := str("do")
		switch {
		case do == "fail":
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: r.Change.SequenceNumber})
		case strings.HasPrefix(do, "failtimes:"):
			n, _ := strconv.Atoi(strings.TrimPrefix(do, "failtimes:"))
			if seenBefore(r.Change.SequenceNumber) <= n {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: r.Change.SequenceNumber})
			}
		case do == "error":
			failBatch = true
		case do == "badreport":
			badReport = true
		}
	}
	if failBatch {
		return resp, &echoError{msg: "asked to fail the batch"}
	}
	if badReport {
		return map[string]any{"batchItemFailures": []map[string]any{{"itemIdentifier": ""}}}, nil
	}
	return resp, nil
}

// seenBefore counts how many times a record has come, this time included, in a file of
// ECHOFN_STATE_DIR (shared by every environment of the function).
func seenBefore(seq string) int {
	path := filepath.Join(os.Getenv("ECHOFN_STATE_DIR"), "seen-"+seq)
	b, _ := os.ReadFile(path)
	n, _ := strconv.Atoi(string(b))
	n++
	_ = os.WriteFile(path, []byte(strconv.Itoa(n)), 0o600)
	return n
}
