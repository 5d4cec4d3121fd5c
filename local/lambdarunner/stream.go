package lambdarunner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/local/dynamo"
)

// DynamoDBAPI is the DynamoDB call a stream mapping makes (to find the table's stream);
// *dynamodb.Client satisfies it.
type DynamoDBAPI interface {
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// ChangeFeed is where a stream mapping reads a table's changes: a local/dynamo replica's
// change feed (*dynamo.Replica), the local stand-in for DynamoDB Streams.
type ChangeFeed interface {
	Subscribe(fn func(dynamo.Change)) (cancel func())
}

// StreamMapping configures a DynamoDB Streams event source mapping.
type StreamMapping struct {
	// Feed is the replica whose changes the mapping reads. Required.
	Feed ChangeFeed
	// Table is the table whose stream is read (the feed carries every table of its
	// replica). Required; it must have a stream (DescribeTable's LatestStreamArn), as
	// Lambda requires.
	Table string
	// StartingPosition is "LATEST" or "TRIM_HORIZON". Default TRIM_HORIZON. The feed
	// keeps no history, so both start with the first change after MapStream: where the
	// local stack maps a stream before any write, that is TRIM_HORIZON's behaviour.
	StartingPosition string
	// BatchSize is the most records per invocation, 1-10000. Default 100.
	BatchSize int
	// BatchingWindow is how long to gather records before invoking. Default 0 (invoke as
	// soon as there is a record); Lambda's maximum is 5 minutes.
	BatchingWindow time.Duration
	// RetryAttempts bounds the retries of a batch whose invocation failed, 1-10000;
	// past it the batch is discarded and reported to OnFailureQueueURL. Default 0:
	// retried until the records are older than MaxRecordAge (Lambda's -1).
	RetryAttempts int
	// MaxRecordAge discards a batch (reported to OnFailureQueueURL) whose first record
	// is older, 60 s to 7 days. Default 0: no limit (Lambda's -1: until the stream trims
	// the record, which the local feed never does).
	MaxRecordAge time.Duration
	// BisectOnError splits a batch whose invocation failed in two and retries the first
	// half, then the rest, so that a record that always fails ends up alone. Each half
	// counts its retries afresh (Lambda's documentation leaves this open).
	BisectOnError bool
	// ReportBatchItemFailures makes the runner read the response as an
	// events.DynamoDBEventResponse: the records before the lowest sequence number listed
	// are done, and the batch is retried from it. An item without an itemIdentifier, or
	// one naming no record of the batch, fails the whole batch. Without it any
	// successful invocation completes the batch.
	ReportBatchItemFailures bool
	// OnFailureQueueURL is the SQS queue (Config.SQS) that learns of discarded batches,
	// as Lambda's on-failure destination does: one message per batch with its shard,
	// sequence numbers and stream ARN (DDBStreamBatchInfo), not its records. Default "":
	// discarded batches are only logged.
	OnFailureQueueURL string
	// RetryWait is the first wait before a retry; each further retry of a batch waits
	// twice as long, up to 5 s. Default 100 ms.
	RetryWait time.Duration
}

// Lambda's limits on a DynamoDB Streams mapping.
const (
	maxStreamBatch     = 10000
	maxRetryAttempts   = 10000
	minRecordAge       = time.Minute
	maxRecordAge       = 7 * 24 * time.Hour
	maxStreamRetryWait = 5 * time.Second
)

// The userIdentity of a record of a TTL deletion.
var ttlIdentity = &events.DynamoDBUserIdentity{Type: "Service", PrincipalID: "dynamodb.amazonaws.com"}

// MapStream starts reading a table's changes and invoking the function with them, like
// a Lambda event source mapping of the table's DynamoDB stream: records in the stream's
// order, one batch in flight at a time (one shard), each record as Lambda shapes it
// (eventName INSERT, MODIFY or REMOVE; the keys and the images the stream's view type
// carries; userIdentity on a TTL deletion; the stream's ARN; the change's sequence
// number). A batch that fails is retried, bisected, checkpointed by partial batch
// failures and discarded as the mapping says; nothing after it is invoked meanwhile. It
// reads until ctx is done or the Runner stops.
func (f *Func) MapStream(ctx context.Context, m StreamMapping) error {
	r := f.r
	switch {
	case m.Feed == nil:
		return fmt.Errorf("%s: stream mapping: Feed is required", f.fn.Name)
	case m.Table == "":
		return fmt.Errorf("%s: stream mapping: Table is required", f.fn.Name)
	case r.cfg.DynamoDB == nil:
		return fmt.Errorf("%s: MapStream needs Config.DynamoDB", f.fn.Name)
	case m.OnFailureQueueURL != "" && r.cfg.SQS == nil:
		return fmt.Errorf("%s: stream mapping: OnFailureQueueURL needs Config.SQS", f.fn.Name)
	}
	switch m.StartingPosition {
	case "":
		m.StartingPosition = "TRIM_HORIZON"
	case "TRIM_HORIZON", "LATEST":
	default:
		return fmt.Errorf("%s: stream mapping: StartingPosition %q: want TRIM_HORIZON or LATEST", f.fn.Name, m.StartingPosition)
	}
	switch {
	case m.BatchSize == 0:
		m.BatchSize = 100
	case m.BatchSize < 1 || m.BatchSize > maxStreamBatch:
		return fmt.Errorf("%s: stream mapping: BatchSize %d out of range 1-%d", f.fn.Name, m.BatchSize, maxStreamBatch)
	}
	switch {
	case m.BatchingWindow < 0 || m.BatchingWindow > maxBatchingWindow:
		return fmt.Errorf("%s: stream mapping: BatchingWindow %s out of range 0-5m", f.fn.Name, m.BatchingWindow)
	case m.RetryAttempts < 0 || m.RetryAttempts > maxRetryAttempts:
		return fmt.Errorf("%s: stream mapping: RetryAttempts %d out of range 1-%d (0: until MaxRecordAge)", f.fn.Name, m.RetryAttempts, maxRetryAttempts)
	case m.MaxRecordAge != 0 && (m.MaxRecordAge < minRecordAge || m.MaxRecordAge > maxRecordAge):
		return fmt.Errorf("%s: stream mapping: MaxRecordAge %s out of range 1m-168h (0: no limit)", f.fn.Name, m.MaxRecordAge)
	case m.RetryWait < 0:
		return fmt.Errorf("%s: stream mapping: negative RetryWait", f.fn.Name)
	case m.RetryWait == 0:
		m.RetryWait = 100 * time.Millisecond
	}
	d, err := r.cfg.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(m.Table)})
	if err != nil {
		return fmt.Errorf("%s: stream mapping: table %s: %w", f.fn.Name, m.Table, err)
	}
	arn := aws.ToString(d.Table.LatestStreamArn)
	spec := d.Table.StreamSpecification
	if arn == "" || spec == nil || !aws.ToBool(spec.StreamEnabled) {
		return fmt.Errorf("%s: stream mapping: table %s has no stream (Lambda refuses this mapping): enable one (StreamSpecification)", f.fn.Name, m.Table)
	}
	s := &streamPoller{f: f, m: m, arn: arn, view: string(spec.StreamViewType), wake: make(chan struct{}, 1)}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ErrStopped
	}
	s.cancel = m.Feed.Subscribe(s.add) // from now on: the feed keeps no history
	pctx, cancel := context.WithCancel(r.ctx)
	stop := context.AfterFunc(ctx, cancel)
	r.pollers.Add(1)
	go func() {
		defer r.pollers.Done()
		defer stop()
		defer cancel()
		defer s.cancel()
		s.run(pctx)
	}()
	f.log.Info("DynamoDB stream mapping started", "stream", arn, "starting_position", m.StartingPosition, "batch_size", m.BatchSize,
		"retry_attempts", m.RetryAttempts, "max_record_age", m.MaxRecordAge, "bisect", m.BisectOnError,
		"report_batch_item_failures", m.ReportBatchItemFailures, "on_failure", m.OnFailureQueueURL != "")
	return nil
}

// streamPoller is a stream mapping's reader: the changes not yet done, in order, and the
// loop that invokes the function with them.
type streamPoller struct {
	f      *Func
	m      StreamMapping
	arn    string
	view   string // the stream's view type: which images its records carry
	cancel func()

	mu      sync.Mutex
	pending []events.DynamoDBEventRecord // received, not yet done (delivered or discarded)
	arrived []time.Time                  // when each pending record reached the stream
	wake    chan struct{}
}

// add takes one change from the feed, which holds its replica's write lock: it only
// queues the record.
func (s *streamPoller) add(c dynamo.Change) {
	if c.Table != s.m.Table {
		return
	}
	rec, err := s.record(c)
	if err != nil {
		s.f.log.Error("DynamoDB stream mapping: change not turned into a record", "seq", c.Seq, "error", err)
		return
	}
	s.mu.Lock()
	s.pending = append(s.pending, rec)
	s.arrived = append(s.arrived, time.Now())
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SequenceNumber is how a change's Seq reads as a stream record's sequence number:
// decimal digits, zero-padded so that string order is the stream's order.
func SequenceNumber(seq uint64) string { return fmt.Sprintf("%021d", seq) }

// record shapes a change as Lambda passes a stream record.
func (s *streamPoller) record(c dynamo.Change) (events.DynamoDBEventRecord, error) {
	rec := events.DynamoDBEventRecord{
		AWSRegion: s.f.r.cfg.Region, EventID: eventID(), EventSource: "aws:dynamodb", EventVersion: "1.1",
		EventSourceArn: s.arn,
	}
	switch {
	case c.Old == nil:
		rec.EventName = string(events.DynamoDBOperationTypeInsert)
	case c.New == nil:
		rec.EventName = string(events.DynamoDBOperationTypeRemove)
	default:
		rec.EventName = string(events.DynamoDBOperationTypeModify)
	}
	if c.Cause == dynamo.CauseTTL {
		rec.UserIdentity = ttlIdentity
	}
	var err error
	ch := &rec.Change
	ch.StreamViewType = s.view
	ch.SequenceNumber = SequenceNumber(c.Seq)
	// Whole seconds, as DynamoDB Streams gives it.
	ch.ApproximateCreationDateTime = events.SecondsEpochTime{Time: c.At.Truncate(time.Second)}
	if ch.Keys, err = lambdaImage(c.Key); err != nil {
		return rec, fmt.Errorf("keys: %w", err)
	}
	if s.view == "NEW_IMAGE" || s.view == "NEW_AND_OLD_IMAGES" {
		if ch.NewImage, err = lambdaImage(c.New); err != nil {
			return rec, fmt.Errorf("new image: %w", err)
		}
	}
	if s.view == "OLD_IMAGE" || s.view == "NEW_AND_OLD_IMAGES" {
		if ch.OldImage, err = lambdaImage(c.Old); err != nil {
			return rec, fmt.Errorf("old image: %w", err)
		}
	}
	size := 0
	for _, img := range []dynamo.Item{c.Key, c.New, c.Old} {
		if n, err := img.Size(); err == nil {
			size += n
		}
	}
	ch.SizeBytes = int64(size)
	return rec, nil
}

// lambdaImage reads an item in DynamoDB's JSON as the event's attribute values.
func lambdaImage(it dynamo.Item) (map[string]events.DynamoDBAttributeValue, error) {
	if it == nil {
		return nil, nil
	}
	b, err := json.Marshal(it)
	if err != nil {
		return nil, err
	}
	var out map[string]events.DynamoDBAttributeValue
	return out, json.Unmarshal(b, &out)
}

func eventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// run invokes the function with the pending records, one batch at a time, until ctx ends.
func (s *streamPoller) run(ctx context.Context) {
	for {
		batch, ok := s.next(ctx)
		if !ok {
			return
		}
		s.process(ctx, batch)
	}
}

// next waits for records and returns the next batch: as soon as there is one, or, with a
// batching window, once the batch is full or the window has passed since the first.
func (s *streamPoller) next(ctx context.Context) (int, bool) {
	var first time.Time
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if n >= s.m.BatchSize || n > 0 && time.Since(first) >= s.m.BatchingWindow {
			return min(n, s.m.BatchSize), true
		}
		wait := time.Hour
		if n > 0 {
			wait = s.m.BatchingWindow - time.Since(first)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, false
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// process delivers the first n pending records: invoke, and on failure checkpoint,
// bisect, retry or discard, until every one of them is done.
func (s *streamPoller) process(ctx context.Context, n int) {
	attempts := 0 // failed invocations of the current batch
	wait := s.m.RetryWait
	invokes := 0
	for n > 0 {
		s.mu.Lock()
		batch := append([]events.DynamoDBEventRecord(nil), s.pending[:n]...)
		oldest := s.arrived[0]
		s.mu.Unlock()
		if s.m.MaxRecordAge > 0 && time.Since(oldest) > s.m.MaxRecordAge {
			s.discard(ctx, batch, "RecordAgeExceeded", invokes, "")
			s.done(n)
			return
		}
		invokes++
		done, failedAt, fnErr := s.invoke(ctx, batch)
		if ctx.Err() != nil && fnErr != nil {
			return // stopping: the records stay pending, as a shard's checkpoint would
		}
		if fnErr == nil && failedAt < 0 {
			s.done(n)
			return
		}
		if done > 0 {
			// Partial success: the records before the checkpoint are done; retry from it.
			s.done(done)
			n -= done
			attempts, wait = 0, s.m.RetryWait
		}
		attempts++
		if s.m.RetryAttempts > 0 && attempts > s.m.RetryAttempts {
			s.mu.Lock()
			left := append([]events.DynamoDBEventRecord(nil), s.pending[:n]...)
			s.mu.Unlock()
			why := "function error"
			if fnErr != nil {
				why = errorKind(fnErr)
			}
			s.discard(ctx, left, "RetryAttemptsExhausted", invokes, why)
			s.done(n)
			return
		}
		if fnErr != nil && s.m.BisectOnError && n > 1 {
			// Retry the first half alone; the second stays pending for the next batch.
			n = n / 2
			attempts = 0
		}
		if !sleepCtx(ctx, wait) {
			return
		}
		wait = min(2*wait, maxStreamRetryWait)
	}
}

// invoke runs one batch. It returns how many leading records are done and, on a partial
// failure, the index of the checkpoint (-1 when none failed), or the invocation's error.
func (s *streamPoller) invoke(ctx context.Context, batch []events.DynamoDBEventRecord) (done, failedAt int, err error) {
	f := s.f
	payload, err := json.Marshal(events.DynamoDBEvent{Records: batch})
	if err != nil {
		return 0, -1, err
	}
	inv, err := f.dispatch(context.WithoutCancel(ctx), payload)
	if err != nil {
		f.log.Warn("DynamoDB stream batch not invoked", "stream", s.arn, "records", len(batch), "reason", errorKind(err))
		return 0, -1, err
	}
	res := <-inv.done
	if res.err != nil {
		f.log.Warn("DynamoDB stream batch failed", "stream", s.arn, "records", len(batch),
			"first", batch[0].Change.SequenceNumber, "request_id", inv.id, "reason", errorKind(res.err))
		return 0, -1, res.err
	}
	if !s.m.ReportBatchItemFailures {
		return len(batch), -1, nil
	}
	at, ok := streamCheckpoint(res.out, batch)
	if !ok {
		f.log.Warn("DynamoDB stream batch failed: invalid partial batch response", "stream", s.arn, "records", len(batch), "request_id", inv.id)
		return 0, -1, errors.New("invalid partial batch response")
	}
	if at >= 0 {
		f.log.Info("DynamoDB stream batch partly failed: retrying from the checkpoint", "stream", s.arn, "records", len(batch),
			"checkpoint", batch[at].Change.SequenceNumber, "request_id", inv.id)
		return at, at, nil
	}
	return len(batch), -1, nil
}

// streamCheckpoint reads a partial batch response with Lambda's rules for streams: a null
// or empty response or list is complete success; otherwise the record with the lowest
// sequence number listed is the checkpoint (its index); an item whose itemIdentifier is
// missing, null, empty or not a record of the batch makes the response invalid.
func streamCheckpoint(out []byte, batch []events.DynamoDBEventRecord) (int, bool) {
	var resp struct {
		BatchItemFailures []map[string]json.RawMessage `json:"batchItemFailures"`
	}
	if len(out) == 0 || string(out) == "null" {
		return -1, true
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return 0, false
	}
	index := make(map[string]int, len(batch))
	for i, r := range batch {
		index[r.Change.SequenceNumber] = i
	}
	at := -1
	for _, item := range resp.BatchItemFailures {
		var id *string
		raw, found := item["itemIdentifier"]
		if !found || json.Unmarshal(raw, &id) != nil || id == nil || *id == "" {
			return 0, false
		}
		i, ok := index[*id]
		if !ok {
			return 0, false
		}
		if at < 0 || i < at {
			at = i
		}
	}
	return at, true
}

// done drops the first n pending records.
func (s *streamPoller) done(n int) {
	s.mu.Lock()
	s.pending = s.pending[n:]
	s.arrived = s.arrived[n:]
	s.mu.Unlock()
}

// discard gives up on a batch: its on-failure destination learns which records were
// lost, as Lambda tells it (DDBStreamBatchInfo), and the log says so.
func (s *streamPoller) discard(ctx context.Context, batch []events.DynamoDBEventRecord, condition string, invokes int, why string) {
	f := s.f
	first, last := batch[0].Change, batch[len(batch)-1].Change
	f.log.Error("DynamoDB stream batch discarded", "stream", s.arn, "condition", condition, "records", len(batch),
		"first", first.SequenceNumber, "last", last.SequenceNumber, "reason", why)
	if s.m.OnFailureQueueURL == "" {
		return
	}
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	msg := map[string]any{
		"requestContext": map[string]any{
			"requestId": newRequestID(), "functionArn": f.arn, "condition": condition, "approximateInvokeCount": invokes,
		},
		"responseContext": map[string]any{"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
		"version":         "1.0",
		"timestamp":       time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"DDBStreamBatchInfo": map[string]any{
			"shardId":                         "shardId-00000000000000000000-00000001",
			"startSequenceNumber":             first.SequenceNumber,
			"endSequenceNumber":               last.SequenceNumber,
			"approximateArrivalOfFirstRecord": stamp(first.ApproximateCreationDateTime.Time),
			"approximateArrivalOfLastRecord":  stamp(last.ApproximateCreationDateTime.Time),
			"batchSize":                       len(batch),
			"streamArn":                       s.arn,
		},
	}
	body, _ := json.Marshal(msg)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := f.r.cfg.SQS.SendMessage(dctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.m.OnFailureQueueURL), MessageBody: aws.String(string(body))}); err != nil {
		f.log.Error("DynamoDB stream batch discarded and its on-failure destination not told", "stream", s.arn, "error", err)
	}
}
