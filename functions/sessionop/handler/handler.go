// Package handler applies session operations from the ops queue to the session table.
//
// Handle is the function's whole logic, shaped like any aws-lambda-go SQS handler and
// tested without AWS: each record is decoded, validated and merged into its item with a
// conditional write (internal/record). A record that cannot be applied (malformed, wrong
// schema version, a merged item over DynamoDB's 400 KB, a write that keeps failing) is
// reported in batchItemFailures, so the queue delivers it again and, after
// maxReceiveCount, moves it to the DLQ; its batch-mates are applied regardless. Handle
// never panics and never fails the batch.
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
}

// ConfigFromEnv reads the function's environment.
func ConfigFromEnv() (Config, error) {
	c := Config{Table: os.Getenv("SESSIONHA_TABLE"), Site: os.Getenv("SESSIONHA_SITE")}
	if v := os.Getenv("SESSIONHA_TOMBSTONE_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SESSIONHA_TOMBSTONE_GRACE=%q: want a positive Go duration such as 10m", v)
		}
		c.TombstoneGrace = d
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
	if c.Table == "" {
		return errors.New("SESSIONHA_TABLE is required: the session table's name")
	}
	if c.TombstoneGrace < 0 || c.ClockTolerance < 0 || c.Parallel < 0 {
		return errors.New("TombstoneGrace, ClockTolerance and Parallel must not be negative")
	}
	return nil
}

// Handler applies batches of session operations.
type Handler struct {
	sessions keyLocks // ops of one session are applied one at a time
	table    *record.Table
	log      *slog.Logger
	parallel int
	metrics  io.Writer // stdout in Lambda, where CloudWatch reads EMF lines
}

// New returns a handler writing to db. log receives one line per failed record and
// never a session id; nil means JSON on stderr.
func New(db record.DB, cfg Config, log *slog.Logger) (*Handler, error) {
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
	return &Handler{
		table:    &record.Table{DB: db, Name: cfg.Table, Grace: cfg.TombstoneGrace, Tolerance: cfg.ClockTolerance},
		log:      log.With("function", "sessionop", "site", cfg.Site),
		parallel: cfg.Parallel,
		metrics:  os.Stdout,
	}, nil
}

// The counters of a batch, published as metrics. Destroyed counts the applied destroys
// (logouts that reached the table), a subset of Applied: sessionctl stats shows it as
// amsessiondb's "deletes".
var metricNames = []string{"Applied", "Unchanged", "Rejected", "Failed", "Reads", "Writes", "Conflicts", "Destroyed"}

// Handle applies every record of the batch and reports the ones that failed.
func (h *Handler) Handle(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	var c batch.Counters
	resp := batch.Run(ctx, ev, h.parallel, func(ctx context.Context, rec *lambdaevents.SQSMessage) error {
		err := h.apply(ctx, rec, &c)
		if err != nil && !errors.Is(err, errRejected) {
			c.Add("Failed", 1)
			h.log.Error("record failed", "messageId", rec.MessageId,
				"receiveCount", rec.Attributes["ApproximateReceiveCount"], "reason", err.Error())
		}
		return err
	})
	batch.Emit(h.metrics, "sessionop", &c, metricNames...)
	return resp, nil
}

// errRejected marks a record that can never apply (already logged as rejected).
var errRejected = errors.New("rejected")

func (h *Handler) apply(ctx context.Context, rec *lambdaevents.SQSMessage, c *batch.Counters) error {
	op, err := events.DecodeSessionOp([]byte(rec.Body))
	if err != nil {
		c.Add("Rejected", 1)
		h.log.Warn("record rejected", "messageId", rec.MessageId, "kind", events.ErrorKind(err),
			"receiveCount", rec.Attributes["ApproximateReceiveCount"], "bytes", len(rec.Body), "reason", err.Error())
		return fmt.Errorf("%w: %w", errRejected, err)
	}
	r := ToRecordOp(op)
	// Ops of one session in a batch would only race each other's conditional writes, and
	// a busy session's ops would run out of rounds: one at a time, others alongside.
	unlock := h.sessions.lock(r.Key)
	res, st, err := h.table.Apply(ctx, r)
	unlock()
	c.Add("Reads", int64(st.Reads))
	c.Add("Writes", int64(st.Writes))
	c.Add("Conflicts", int64(st.Conflicts))
	if errors.Is(err, record.ErrTooLarge) {
		// It can never apply: set aside like a malformed message, with its reason.
		c.Add("Rejected", 1)
		h.log.Warn("record rejected", "messageId", rec.MessageId, "kind", "too-large-item",
			"receiveCount", rec.Attributes["ApproximateReceiveCount"], "bytes", len(rec.Body), "reason", err.Error())
		return fmt.Errorf("%w: apply %s: %w", errRejected, op.Op, err)
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
		r.Kind, r.Until = record.Destroy, op.Until
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
