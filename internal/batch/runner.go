// Package batch runs the records of an SQS batch the way every sessionha function does
// (Runner), and writes the batch's counters as one CloudWatch embedded-metric-format line,
// which Lambda's log pipeline turns into metrics without an API call (Emit).
//
// A record ends one of three ways:
//
//   - applied: the event source mapping deletes it;
//   - it can never apply (apply returned a Poison error: malformed, too large, a schema
//     version this build does not read, invalid): the runner sends it to the queue's
//     dead-letter queue at once, its body and attributes with the reason added as
//     attributes (events.DeadLetterKind and the rest), and reports it done, so the
//     mapping deletes it from the source queue. If that send fails it is reported in
//     batchItemFailures instead, and comes back after Retry.Base: nothing is lost, and
//     a send that keeps failing leaves it to the queue's redrive policy;
//   - it failed for a reason that may pass (throttling, an outage, lost races, a panic):
//     the runner hides it for Retry.Delay(its receive count) with ChangeMessageVisibility
//     and reports it in batchItemFailures, so that it comes back on an exponential
//     schedule and reaches the DLQ only after maxReceiveCount receives.
//
// Records run several at once, each failing alone; a batch never fails as a whole.
//
//	r, err := batch.New(batch.Config{Function: "sessionop", SQS: sqsClient, QueueURL: q, DLQURL: dlq,
//		Retry: retry.Schedule{Base: 10 * time.Second, Max: 5 * time.Minute}})
//	...
//	var c batch.Counters
//	resp := r.Run(ctx, ev, &c, func(ctx context.Context, rec *events.SQSMessage) error {
//		op, err := decode(rec.Body)
//		if err != nil {
//			return batch.Poison("malformed", err)
//		}
//		return apply(ctx, op) // any other error: retried later
//	})
package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/internal/retry"
)

// SQS is the part of the SQS API the runner calls.
type SQS interface {
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Config configures a Runner; the zero value of each optional field means the default
// named in its comment.
type Config struct {
	// Function names the function in dead letters and logs. Required.
	Function string
	// SQS sends dead letters and hides failed records. Required.
	SQS SQS
	// QueueURL is the queue the function consumes (its failed records are hidden there).
	// Required.
	QueueURL string
	// DLQURL is that queue's dead-letter queue. Required.
	DLQURL string
	// Retry is the schedule failed records are hidden on. Required.
	Retry retry.Schedule
	// Parallel is how many records run at once. Default 10.
	Parallel int
	// Log receives one line per record that did not apply, never a session id. Default:
	// JSON on stderr.
	Log *slog.Logger
}

// Runner runs batches. It is safe for concurrent use.
type Runner struct {
	cfg Config
}

// New checks cfg and returns a runner.
func New(cfg Config) (*Runner, error) {
	switch {
	case cfg.Function == "":
		return nil, errors.New("batch: Function is required")
	case cfg.SQS == nil:
		return nil, errors.New("batch: SQS is required: the runner dead-letters and hides records itself")
	case cfg.QueueURL == "":
		return nil, errors.New("batch: QueueURL is required: the queue the function consumes")
	case cfg.DLQURL == "":
		return nil, errors.New("batch: DLQURL is required: the dead-letter queue of the function's queue")
	case cfg.Parallel < 0:
		return nil, errors.New("batch: Parallel must not be negative")
	}
	if err := cfg.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 10
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return &Runner{cfg: cfg}, nil
}

// PoisonError marks a record that can never apply.
type PoisonError struct {
	Kind string // a short word: malformed, too-large, schema-version, invalid
	Err  error  // why, naming the offending field (never quoting a session id)
}

func (e *PoisonError) Error() string { return e.Kind + ": " + e.Err.Error() }
func (e *PoisonError) Unwrap() error { return e.Err }

// Poison returns the error an apply func returns for a record that can never apply: the
// runner dead-letters it at once, with kind and err's message as its reason.
func Poison(kind string, err error) error { return &PoisonError{Kind: kind, Err: err} }

// Counters the runner adds to: Rejected (records that can never apply), DeadLettered
// (those of them sent to the DLQ), Failed (records that failed for a reason that may
// pass, and will be retried).
const (
	CounterRejected     = "Rejected"
	CounterDeadLettered = "DeadLettered"
	CounterFailed       = "Failed"
)

// Run calls apply for every record, at most Parallel at once, settles the records that
// did not apply (see the package doc) and reports those the queue must deliver again.
// apply gets a context that ends early enough to leave the runner time to settle them
// before the invocation's deadline.
func (r *Runner) Run(ctx context.Context, ev events.SQSEvent, c *Counters, apply func(context.Context, *events.SQSMessage) error) events.SQSEventResponse {
	work, cancel := workContext(ctx)
	defer cancel()
	var (
		resp events.SQSEventResponse
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, r.cfg.Parallel)
	)
	for i := range ev.Records {
		rec := &ev.Records[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if r.settle(ctx, rec, c, safely(work, rec, apply)) {
				return
			}
			mu.Lock()
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
			mu.Unlock()
		}()
	}
	wg.Wait()
	return resp
}

// settle ends a record whose apply returned err, and reports whether it is done (to be
// deleted from the source queue).
func (r *Runner) settle(ctx context.Context, rec *events.SQSMessage, c *Counters, err error) bool {
	if err == nil {
		return true
	}
	n := receiveCount(rec)
	log := r.cfg.Log.With("messageId", rec.MessageId, "receiveCount", n)
	var p *PoisonError
	if errors.As(err, &p) {
		c.Add(CounterRejected, 1)
		sendErr := r.deadLetter(ctx, rec, p, n)
		if sendErr == nil {
			c.Add(CounterDeadLettered, 1)
			log.Warn("record rejected", "kind", p.Kind, "bytes", len(rec.Body), "reason", p.Err.Error(), "deadLettered", true)
			return true
		}
		// Not sent: the queue delivers it again soon, and a send that keeps failing
		// leaves it to the queue's redrive policy.
		delay := r.cfg.Retry.Delay(1, rand.Float64())
		log.Error("record rejected", "kind", p.Kind, "bytes", len(rec.Body), "reason", p.Err.Error(),
			"deadLettered", false, "error", sendErr.Error(), "retryIn", delay.String())
		r.hide(ctx, rec, delay, log)
		return false
	}
	c.Add(CounterFailed, 1)
	delay := r.cfg.Retry.Delay(n, rand.Float64())
	log.Error("record failed", "reason", err.Error(), "retryIn", delay.String())
	r.hide(ctx, rec, delay, log)
	return false
}

// hide keeps a failed record from being received again for d. If that fails, the
// queue's own visibility timeout applies.
func (r *Runner) hide(ctx context.Context, rec *events.SQSMessage, d time.Duration, log *slog.Logger) {
	_, err := r.cfg.SQS.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(r.cfg.QueueURL), ReceiptHandle: aws.String(rec.ReceiptHandle), VisibilityTimeout: retry.Seconds(d),
	})
	if err != nil {
		log.Warn("visibility change failed: the queue's visibility timeout applies", "error", err.Error())
	}
}

// workContext is ctx ending early enough before its deadline (Lambda's) that the
// runner can still dead-letter and hide records: a fifth of the time left, between
// 250 ms and 2 s. Without a deadline it is ctx.
func workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := min(max(time.Until(dl)/5, 250*time.Millisecond), 2*time.Second)
	return context.WithDeadline(ctx, dl.Add(-reserve))
}

// receiveCount is the record's ApproximateReceiveCount, 1 if absent.
func receiveCount(rec *events.SQSMessage) int {
	n, err := strconv.Atoi(rec.Attributes["ApproximateReceiveCount"])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func safely(ctx context.Context, rec *events.SQSMessage, apply func(context.Context, *events.SQSMessage) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return apply(ctx, rec)
}
