// Package handler applies session operations from the ops queue to the session table.
//
// Handle is the function's whole logic, shaped like any aws-lambda-go SQS handler and
// tested without AWS: each record is decoded, validated and merged into its item with a
// conditional write (internal/record). A record that can never apply (malformed, too
// large, wrong schema version, invalid, or a merged item over DynamoDB's 400 KB) goes to the DLQ at its first receive, with its
// reason as message attributes; one whose write failed (throttling, an outage, lost
// races) is hidden on the retry schedule and reported in batchItemFailures, so the queue
// delivers it again later and moves it to the DLQ only after maxReceiveCount receives
// (internal/batch). Its batch-mates are applied regardless. Handle never panics and never
// fails the batch.
package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/batch"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/internal/retry"
)

// Config is the function's configuration; the zero value of each optional field means
// the default named in its comment.
type Config struct {
	// Table is the session table's name. Required (SESSIONHA_TABLE).
	Table string
	// Site is the site this function serves, for logs (SESSIONHA_SITE). Default "".
	Site string
	// TombstoneGrace is how long a tombstone outlives its session's latest possible
	// deadline (and at least its destroy), and an ended session its deadline, so that a
	// late op finds them (SESSIONHA_TOMBSTONE_GRACE, a Go duration). It must cover the
	// clock skew between auth servers. Default 30m (record.DefaultGrace).
	TombstoneGrace time.Duration
	// ClockTolerance is how far ahead of this function's clock an op's created and last
	// access may be; later ones are clamped, so that an auth server whose clock is ahead
	// cannot stretch a session (SESSIONHA_CLOCK_TOLERANCE, a Go duration). Default 30s
	// (record.DefaultTolerance).
	ClockTolerance time.Duration
	// Parallel is how many records of a batch are applied at once. Default 10.
	Parallel int
	// QueueURL is the ops queue, where failed records are hidden until their retry.
	// Required (SESSIONHA_QUEUE_URL).
	QueueURL string
	// DLQURL is the ops queue's dead-letter queue, where records that can never apply
	// go at once. Required (SESSIONHA_DLQ_URL).
	DLQURL string
	// RetryBase is how long a failed record waits after its first receive; each further
	// receive doubles it, up to RetryMax (SESSIONHA_RETRY_BASE, a Go duration). Default 10s.
	RetryBase time.Duration
	// RetryMax caps the wait (SESSIONHA_RETRY_MAX). Default 5m, or RetryBase if longer.
	RetryMax time.Duration
}

// ConfigFromEnv reads the function's environment.
func ConfigFromEnv() (Config, error) {
	c := Config{Table: os.Getenv("SESSIONHA_TABLE"), Site: os.Getenv("SESSIONHA_SITE"),
		QueueURL: os.Getenv("SESSIONHA_QUEUE_URL"), DLQURL: os.Getenv("SESSIONHA_DLQ_URL")}
	for name, dst := range map[string]*time.Duration{
		"SESSIONHA_TOMBSTONE_GRACE": &c.TombstoneGrace, "SESSIONHA_RETRY_BASE": &c.RetryBase, "SESSIONHA_RETRY_MAX": &c.RetryMax,
	} {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, fmt.Errorf("%s=%q: want a positive Go duration such as 10s", name, v)
			}
			*dst = d
		}
	}
	if v := os.Getenv("SESSIONHA_CLOCK_TOLERANCE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SESSIONHA_CLOCK_TOLERANCE=%q: want a positive Go duration such as 30s", v)
		}
		c.ClockTolerance = d
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Table == "":
		return errors.New("SESSIONHA_TABLE is required: the session table's name")
	case c.QueueURL == "":
		return errors.New("SESSIONHA_QUEUE_URL is required: the ops queue's URL")
	case c.DLQURL == "":
		return errors.New("SESSIONHA_DLQ_URL is required: the ops queue's dead-letter queue's URL")
	case c.TombstoneGrace < 0 || c.ClockTolerance < 0 || c.Parallel < 0 || c.RetryBase < 0 || c.RetryMax < 0:
		return errors.New("TombstoneGrace, ClockTolerance, Parallel, RetryBase and RetryMax must not be negative")
	}
	return c.retry().Validate()
}

// retry is the schedule of c, defaults filled in.
func (c Config) retry() retry.Schedule {
	s := retry.Schedule{Base: c.RetryBase, Max: c.RetryMax}
	if s.Base == 0 {
		s.Base = 10 * time.Second
	}
	if s.Max == 0 {
		s.Max = max(5*time.Minute, s.Base)
	}
	return s
}

// Handler applies batches of session operations.
type Handler struct {
	sessions keyLocks // ops of one session are applied one at a time
	table    *record.Table
	runner   *batch.Runner
	log      *slog.Logger
	metrics  io.Writer // stdout in Lambda, where CloudWatch reads EMF lines
}

// New returns a handler writing to db, dead-lettering and hiding records on q. log
// receives one line per record that did not apply and never a session id; nil means
// JSON on stderr.
func New(db record.DB, q batch.SQS, cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.TombstoneGrace == 0 {
		cfg.TombstoneGrace = record.DefaultGrace
	}
	if cfg.ClockTolerance == 0 {
		cfg.ClockTolerance = record.DefaultTolerance
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 10
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	log = log.With("function", "sessionop", "site", cfg.Site)
	runner, err := batch.New(batch.Config{Function: "sessionop", SQS: q, QueueURL: cfg.QueueURL, DLQURL: cfg.DLQURL,
		Retry: cfg.retry(), Parallel: cfg.Parallel, Log: log})
	if err != nil {
		return nil, err
	}
	return &Handler{
		table:   &record.Table{DB: db, Name: cfg.Table, Grace: cfg.TombstoneGrace, Tolerance: cfg.ClockTolerance},
		runner:  runner,
		log:     log,
		metrics: os.Stdout,
	}, nil
}

// The counters of a batch, published as metrics. Destroyed counts the applied destroys
// (logouts that reached the table), a subset of Applied: sessionctl stats shows it as
// amsessiondb's "deletes". Rejected, DeadLettered and Failed are the runner's; Superseded
// and SupersededFailed count the ownership notices (owner.go).
var metricNames = []string{"Applied", "Unchanged", "Rejected", "DeadLettered", "Failed", "Reads", "Writes", "Conflicts", "Destroyed", "Superseded", "SupersededFailed"}

// Handle applies every record of the batch and reports the ones the queue must deliver
// again.
func (h *Handler) Handle(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	var c batch.Counters
	resp := h.runner.Run(ctx, ev, &c, func(ctx context.Context, rec *lambdaevents.SQSMessage) error {
		return h.apply(ctx, rec, &c)
	})
	batch.Emit(h.metrics, "sessionop", &c, metricNames...)
	return resp, nil
}

func (h *Handler) apply(ctx context.Context, rec *lambdaevents.SQSMessage, c *batch.Counters) error {
	op, err := events.DecodeSessionOp([]byte(rec.Body))
	if err != nil {
		return batch.Poison(events.ErrorKind(err), err)
	}
	r := ToRecordOp(op)
	// Ops of one session in a batch would only race each other's conditional writes, and
	// a busy session's ops would run out of rounds: one at a time, others alongside.
	unlock := h.sessions.lock(r.Key)
	res, st, err := h.table.Apply(withCounters(ctx, c), r) // owner.go counts its notices
	unlock()
	c.Add("Reads", int64(st.Reads))
	c.Add("Writes", int64(st.Writes))
	c.Add("Conflicts", int64(st.Conflicts))
	if errors.Is(err, record.ErrTooLarge) {
		// It can never apply: to the DLQ at once, like a malformed message, with its reason.
		return batch.Poison("too-large-item", fmt.Errorf("apply %s: %w", op.Op, err))
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", op.Op, err)
	}
	if res == record.Written {
		c.Add("Applied", 1)
		if op.Op == events.OpDestroy {
			c.Add("Destroyed", 1)
		}
	} else {
		c.Add("Unchanged", 1)
	}
	return nil
}

// keyLocks is a mutex per key, made while in use.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock locks key and returns the func that unlocks it.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// ToRecordOp turns a decoded operation into the record's terms.
func ToRecordOp(op *events.SessionOp) record.Op {
	r := record.Op{Key: record.Key(op.Cluster, op.ID), Version: record.Version(op.Version, op.Writer)}
	switch op.Op {
	case events.OpCreate:
		r.Kind = record.Create
	case events.OpSave:
		r.Kind = record.Save
	case events.OpDelta:
		r.Kind = record.Delta
		r.Set, r.Remove = op.Set, op.Remove
	case events.OpDestroy:
		// The tombstone keeps why and where from: the table's stream tells the lifecycle
		// function (functions/lifecycle) how the session ended.
		r.Kind, r.Until, r.Reason, r.Site = record.Destroy, op.Until, op.Reason, op.Site
		return r
	}
	s := op.Session
	r.Session = &record.Item{
		Principal: s.Principal, Group: s.Group,
		Created: s.Created, LastAccess: s.LastAccess, MaxIdle: s.MaxIdle, MaxLife: s.MaxLife,
		Site: op.Site, Writer: op.Writer, Attrs: s.Attrs,
	}
	return r
}
