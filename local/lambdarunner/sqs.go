package lambdarunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSMapping configures an SQS event source mapping.
type SQSMapping struct {
	// QueueURL is the queue to poll. Required.
	QueueURL string
	// QueueARN goes in each record's eventSourceARN. Default: the queue's QueueArn
	// attribute; if set, it must match it.
	QueueARN string
	// BatchSize is the most records per invocation, 1-10. Default 10.
	BatchSize int
	// BatchingWindow is how long to keep gathering records before invoking. Default 0:
	// invoke as soon as a receive returns any message, as Lambda does without a window.
	// Lambda's maximum is 5 minutes.
	BatchingWindow time.Duration
	// MaxConcurrency is how many batches may be in flight at once (one poller each).
	// Default: the function's Concurrency.
	MaxConcurrency int
	// ReportBatchItemFailures makes the runner read the function's response as an
	// events.SQSEventResponse and delete only the messages not listed in
	// batchItemFailures. Without it, a successful invocation deletes the whole batch,
	// whatever the function returns (as in Lambda, where a partial batch response is
	// ignored unless the mapping enables it).
	ReportBatchItemFailures bool
}

// maxBatchingWindow is Lambda's MaximumBatchingWindowInSeconds limit.
const maxBatchingWindow = 5 * time.Minute

// longPoll is SQS's longest receive wait.
const longPoll = 20

// MapSQS starts polling a queue and invoking the function with its messages, like a
// Lambda event source mapping. It checks the queue first, refusing as Lambda does a
// queue whose visibility timeout is shorter than the function's timeout. Polling lasts
// until ctx is done or the Runner stops; a batch already received is still invoked and
// deleted then.
//
// On success the batch is deleted (with ReportBatchItemFailures, all but the messages
// the function reported); on a function error, crash or timeout nothing is deleted, so
// the messages come back after the queue's visibility timeout and the queue's redrive
// policy eventually moves them to its dead-letter queue. The runner never changes
// visibility timeouts and never moves messages itself, as Lambda's mapping does not: a
// function that hides a failed message for longer (ChangeMessageVisibility, to retry on
// a schedule) or dead-letters one itself gets what it asked for.
func (f *Func) MapSQS(ctx context.Context, m SQSMapping) error {
	r := f.r
	if r.cfg.SQS == nil {
		return fmt.Errorf("%s: MapSQS needs Config.SQS", f.fn.Name)
	}
	switch {
	case m.QueueURL == "":
		return fmt.Errorf("%s: SQS mapping: QueueURL is required", f.fn.Name)
	case m.BatchSize == 0:
		m.BatchSize = 10
	case m.BatchSize < 1 || m.BatchSize > 10:
		return fmt.Errorf("%s: SQS mapping: BatchSize %d out of range 1-10", f.fn.Name, m.BatchSize)
	}
	if m.BatchingWindow < 0 || m.BatchingWindow > maxBatchingWindow {
		return fmt.Errorf("%s: SQS mapping: BatchingWindow %s out of range 0-5m", f.fn.Name, m.BatchingWindow)
	}
	switch {
	case m.MaxConcurrency == 0:
		m.MaxConcurrency = f.fn.Concurrency
	case m.MaxConcurrency < 0:
		return fmt.Errorf("%s: SQS mapping: negative MaxConcurrency %d", f.fn.Name, m.MaxConcurrency)
	}

	attrs, err := r.cfg.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(m.QueueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn, types.QueueAttributeNameVisibilityTimeout},
	})
	if err != nil {
		return fmt.Errorf("%s: SQS mapping: queue %s: %w", f.fn.Name, m.QueueURL, err)
	}
	arn := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	switch {
	case m.QueueARN == "":
		m.QueueARN = arn
	case arn != "" && arn != m.QueueARN:
		return fmt.Errorf("%s: SQS mapping: QueueARN %s, but queue %s has ARN %s", f.fn.Name, m.QueueARN, m.QueueURL, arn)
	}
	if vt, err := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)]); err == nil && time.Duration(vt)*time.Second < f.fn.Timeout {
		// Lambda's CreateEventSourceMapping refuses this: a batch still running would
		// become visible again and be processed twice.
		return fmt.Errorf("%s: SQS mapping: queue visibility timeout %ds is less than the function timeout %s (Lambda refuses this mapping)", f.fn.Name, vt, f.fn.Timeout)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ErrStopped
	}
	pctx, cancel := context.WithCancel(r.ctx)
	stop := context.AfterFunc(ctx, cancel)
	p := &poller{f: f, m: m}
	r.pollers.Add(m.MaxConcurrency)
	done := make(chan struct{}, m.MaxConcurrency)
	for range m.MaxConcurrency {
		go func() {
			defer r.pollers.Done()
			defer func() { done <- struct{}{} }()
			p.run(pctx)
		}()
	}
	go func() {
		// Release the context once every poller has ended.
		for range m.MaxConcurrency {
			<-done
		}
		stop()
		cancel()
	}()
	f.log.Info("SQS mapping started", "queue", m.QueueARN, "batch_size", m.BatchSize,
		"batching_window", m.BatchingWindow, "pollers", m.MaxConcurrency, "report_batch_item_failures", m.ReportBatchItemFailures)
	return nil
}

// poller is one of a mapping's polling loops; each has at most one batch in flight.
type poller struct {
	f *Func
	m SQSMapping
}

func (p *poller) run(ctx context.Context) {
	var backoff time.Duration
	for ctx.Err() == nil {
		msgs, err := p.receive(ctx)
		if ctx.Err() != nil && len(msgs) == 0 {
			return
		}
		if err != nil {
			backoff = nextBackoff(backoff)
			p.f.log.Warn("SQS receive failed", "queue", p.m.QueueARN, "error", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if err := p.process(ctx, msgs); err != nil {
			// The environment failed (not the function): slow down, so that a
			// function that cannot start does not burn through every message's receive
			// count in a tight loop.
			backoff = nextBackoff(backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
	}
}

// receive long-polls for a batch: it returns as soon as any message arrives, or, with a
// batching window, gathers until the batch is full or the window has passed.
func (p *poller) receive(ctx context.Context) ([]types.Message, error) {
	batch, err := p.receiveOnce(ctx, p.m.BatchSize, longPoll)
	if err != nil || len(batch) == 0 || p.m.BatchingWindow == 0 {
		return batch, err
	}
	end := time.Now().Add(p.m.BatchingWindow)
	for len(batch) < p.m.BatchSize {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		// Whole seconds only, so the receive never outlasts the window; under a second
		// left, short polls with a pause between them.
		wait := min(int32(left/time.Second), longPoll)
		more, err := p.receiveOnce(ctx, p.m.BatchSize-len(batch), wait)
		if err != nil {
			// Invoke with what we have: those messages are already in flight.
			if ctx.Err() != nil {
				break
			}
			p.f.log.Warn("SQS receive failed during the batching window", "queue", p.m.QueueARN, "error", err)
			break
		}
		batch = append(batch, more...)
		if len(more) == 0 && wait == 0 && !sleepCtx(ctx, min(left, 100*time.Millisecond)) {
			break
		}
	}
	return batch, nil
}

func (p *poller) receiveOnce(ctx context.Context, max int, wait int32) ([]types.Message, error) {
	out, err := p.f.r.cfg.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(p.m.QueueURL),
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             wait,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
		// VisibilityTimeout deliberately unset: the queue's own applies, as with Lambda.
	})
	if err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// process invokes the function with one batch and deletes what succeeded. It returns an
// error only when the environment failed (crash, timeout, init failure).
func (p *poller) process(ctx context.Context, msgs []types.Message) error {
	f := p.f
	payload, err := json.Marshal(sqsEvent(msgs, p.m.QueueARN, f.r.cfg.Region))
	if err != nil {
		return err // cannot happen: the event is strings and maps
	}
	ids := messageIDs(msgs)
	// Messages received are invoked even if polling is being stopped: they are in
	// flight already, and Stop waits for pollers before it stops the environments.
	inv, err := f.dispatch(context.WithoutCancel(ctx), payload)
	if err != nil {
		// Not invoked (no environment could start): the messages come back after their
		// visibility timeout.
		f.log.Warn("SQS batch not invoked", "queue", p.m.QueueARN, "messages", len(msgs), "message_ids", ids, "reason", errorKind(err))
		return err
	}
	// Wait for the result even if polling is being stopped: the invocation runs on
	// (bounded by the function's timeout), and deleting what succeeded avoids
	// processing it twice.
	res := <-inv.done
	if res.err != nil {
		f.log.Warn("SQS batch failed: nothing deleted", "queue", p.m.QueueARN, "messages", len(msgs),
			"message_ids", ids, "request_id", inv.id, "reason", errorKind(res.err))
		var fe *FunctionError
		if errors.As(res.err, &fe) {
			return nil
		}
		return res.err
	}

	del := msgs
	if p.m.ReportBatchItemFailures {
		failed, ok := batchItemFailures(res.out, msgs)
		if !ok {
			f.log.Warn("SQS batch failed: invalid partial batch response, nothing deleted", "queue", p.m.QueueARN,
				"messages", len(msgs), "message_ids", ids, "request_id", inv.id)
			return nil
		}
		del = make([]types.Message, 0, len(msgs))
		for _, m := range msgs {
			if !failed[aws.ToString(m.MessageId)] {
				del = append(del, m)
			}
		}
		if len(failed) > 0 {
			failedIDs := make([]string, 0, len(failed))
			for id := range failed {
				failedIDs = append(failedIDs, id)
			}
			f.log.Info("SQS batch partly failed", "queue", p.m.QueueARN, "messages", len(msgs),
				"failed", len(failed), "failed_ids", failedIDs, "request_id", inv.id)
		}
	}
	// Deleting must outlive a Stop that cancelled ctx while the batch ran.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p.delete(dctx, del)
	f.log.Debug("SQS batch done", "queue", p.m.QueueARN, "messages", len(msgs), "deleted", len(del), "request_id", inv.id)
	return nil
}

// delete removes messages with DeleteMessageBatch (at most 10 per call, so one call for
// any batch the mapping builds).
func (p *poller) delete(ctx context.Context, msgs []types.Message) {
	for len(msgs) > 0 {
		n := min(len(msgs), 10)
		entries := make([]types.DeleteMessageBatchRequestEntry, n)
		for i, m := range msgs[:n] {
			// The entry id only has to be unique in the request; an index always is
			// (and is always a valid id).
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
		}
		out, err := p.f.r.cfg.SQS.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.m.QueueURL), Entries: entries})
		if err != nil {
			p.f.log.Warn("SQS delete failed: the messages will be processed again", "queue", p.m.QueueARN,
				"messages", n, "message_ids", messageIDs(msgs[:n]), "error", err)
		} else if len(out.Failed) > 0 {
			var ids []string
			for _, fl := range out.Failed {
				if i, err := strconv.Atoi(aws.ToString(fl.Id)); err == nil && i < n {
					ids = append(ids, aws.ToString(msgs[i].MessageId))
				}
			}
			p.f.log.Warn("SQS delete partly failed: those messages will be processed again", "queue", p.m.QueueARN,
				"failed", len(out.Failed), "message_ids", ids, "code", aws.ToString(out.Failed[0].Code))
		}
		msgs = msgs[n:]
	}
}

// sqsEvent builds the event Lambda passes for an SQS batch.
func sqsEvent(msgs []types.Message, arn, region string) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(msgs))}
	for i, m := range msgs {
		attrs := make(map[string]string, len(m.Attributes))
		for k, v := range m.Attributes {
			attrs[k] = v
		}
		mattrs := make(map[string]events.SQSMessageAttribute, len(m.MessageAttributes))
		for k, v := range m.MessageAttributes {
			// Lambda always sends both list fields, empty when unused.
			a := events.SQSMessageAttribute{
				StringValue:      v.StringValue,
				BinaryValue:      v.BinaryValue,
				StringListValues: v.StringListValues,
				BinaryListValues: v.BinaryListValues,
				DataType:         aws.ToString(v.DataType),
			}
			if a.StringListValues == nil {
				a.StringListValues = []string{}
			}
			if a.BinaryListValues == nil {
				a.BinaryListValues = [][]byte{}
			}
			mattrs[k] = a
		}
		ev.Records[i] = events.SQSMessage{
			MessageId:              aws.ToString(m.MessageId),
			ReceiptHandle:          aws.ToString(m.ReceiptHandle),
			Body:                   aws.ToString(m.Body),
			Md5OfBody:              aws.ToString(m.MD5OfBody),
			Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
			Attributes:             attrs,
			MessageAttributes:      mattrs,
			EventSourceARN:         arn,
			EventSource:            "aws:sqs",
			AWSRegion:              region,
		}
	}
	return ev
}

// batchItemFailures reads a partial batch response with Lambda's rules: a null or empty
// response, or an empty or null batchItemFailures, is complete success; invalid JSON, or
// an item whose itemIdentifier is missing, null, empty or not a message of the batch,
// fails the whole batch (ok false).
func batchItemFailures(out []byte, msgs []types.Message) (failed map[string]bool, ok bool) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 || string(out) == "null" {
		return nil, true
	}
	var resp struct {
		BatchItemFailures []map[string]json.RawMessage `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, false
	}
	inBatch := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		inBatch[aws.ToString(m.MessageId)] = true
	}
	failed = map[string]bool{}
	for _, item := range resp.BatchItemFailures {
		var id *string
		if raw, found := item["itemIdentifier"]; !found || json.Unmarshal(raw, &id) != nil || id == nil || *id == "" || !inBatch[*id] {
			return nil, false
		}
		failed[*id] = true
	}
	return failed, true
}

func messageIDs(msgs []types.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = aws.ToString(m.MessageId)
	}
	return ids
}

// errorKind describes an invocation error for the log without its message, which may
// quote session data (a function error's message, the function's output).
func errorKind(err error) string {
	var fe *FunctionError
	switch {
	case errors.As(err, &fe):
		return "function error " + fe.Type
	case errors.Is(err, ErrTimeout):
		return "timed out"
	case errors.Is(err, ErrCrashed):
		return "bootstrap crashed"
	case errors.Is(err, ErrStopped):
		return "runner stopped"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err.Error()
	default:
		return "environment unavailable"
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 250 * time.Millisecond
	}
	return min(2*d, 5*time.Second)
}

// sleepCtx waits d, or less if ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
