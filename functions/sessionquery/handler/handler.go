// Package handler answers failover queries: for each query on the query queue it reads
// the session with a strongly consistent read (its item and its logout item, in one
// BatchGetItem: a logout item is final, whatever the session item says; see
// internal/record) and publishes the answer on the reply topic, with the message
// attribute "requester" that routes it to the asking instance's own queue. This is the
// old products' failover read (a request topic, a response topic, a bounded wait), for
// auth servers that may not read the table themselves.
//
// A query is worth something only while its client waits (MaxWait, 5 s by default), so
// failures are handled for that (internal/batch does the work): a query that can never
// be answered (malformed, invalid, ...) goes to the DLQ at its first receive with its
// reason, as sessionop's poison does; one whose read or reply failed is retried a second
// later, not on sessionop's long schedule; and a query older than MaxAge (since it
// reached the queue) is dropped, answered or not, and counted as Expired: its client has
// given up (ErrTimeout), and answering it, dead-lettering it or redriving it helps no one.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/batch"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/internal/retry"
)

// Config is the function's configuration.
type Config struct {
	// Table is the session table's name. Required (SESSIONHA_TABLE).
	Table string
	// ReplyTopicARN is where answers go. Required (SESSIONHA_REPLY_TOPIC_ARN).
	ReplyTopicARN string
	// Site is the site this function serves, for logs (SESSIONHA_SITE). Default "".
	Site string
	// Parallel is how many queries of a batch are answered at once. Default 10.
	Parallel int
	// QueueURL is the query queue, where a failed query is hidden until its retry.
	// Required (SESSIONHA_QUEUE_URL).
	QueueURL string
	// DLQURL is the query queue's dead-letter queue, where queries that can never be
	// answered go at once. Required (SESSIONHA_DLQ_URL).
	DLQURL string
	// MaxAge is the age (since the query reached the queue) past which a query is dropped
	// instead of answered or retried: its client no longer waits
	// (SESSIONHA_QUERY_MAX_AGE, a Go duration). Default 30s.
	MaxAge time.Duration
}

// retrySchedule is how a failed query is retried: after a second (SQS's least), every
// time, while its client may still be waiting.
var retrySchedule = retry.Schedule{Base: time.Second, Max: time.Second}

// ConfigFromEnv reads the function's environment.
func ConfigFromEnv() (Config, error) {
	c := Config{Table: os.Getenv("SESSIONHA_TABLE"), ReplyTopicARN: os.Getenv("SESSIONHA_REPLY_TOPIC_ARN"), Site: os.Getenv("SESSIONHA_SITE"),
		QueueURL: os.Getenv("SESSIONHA_QUEUE_URL"), DLQURL: os.Getenv("SESSIONHA_DLQ_URL")}
	if v := os.Getenv("SESSIONHA_QUERY_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SESSIONHA_QUERY_MAX_AGE=%q: want a positive Go duration such as 30s", v)
		}
		c.MaxAge = d
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Table == "":
		return errors.New("SESSIONHA_TABLE is required: the session table's name")
	case c.ReplyTopicARN == "":
		return errors.New("SESSIONHA_REPLY_TOPIC_ARN is required: the topic answers are published on")
	case c.QueueURL == "":
		return errors.New("SESSIONHA_QUEUE_URL is required: the query queue's URL")
	case c.DLQURL == "":
		return errors.New("SESSIONHA_DLQ_URL is required: the query queue's dead-letter queue's URL")
	case c.Parallel < 0 || c.MaxAge < 0:
		return errors.New("Parallel and MaxAge must not be negative")
	}
	return nil
}

// Publisher is the SNS call the handler makes.
type Publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Handler answers batches of queries.
type Handler struct {
	table   *record.Table
	bus     Publisher
	topic   string
	log     *slog.Logger
	maxAge  time.Duration
	runner  *batch.Runner
	metrics interface{ Write([]byte) (int, error) }
}

// New returns a handler reading db, answering on bus, and dead-lettering and hiding
// queries on q.
func New(db record.DB, bus Publisher, q batch.SQS, cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	log = log.With("function", "sessionquery", "site", cfg.Site)
	runner, err := batch.New(batch.Config{Function: "sessionquery", SQS: q, QueueURL: cfg.QueueURL, DLQURL: cfg.DLQURL,
		Retry: retrySchedule, Parallel: cfg.Parallel, Log: log})
	if err != nil {
		return nil, err
	}
	return &Handler{
		table: &record.Table{DB: db, Name: cfg.Table}, bus: bus, topic: cfg.ReplyTopicARN,
		log: log, maxAge: cfg.MaxAge, runner: runner, metrics: os.Stdout,
	}, nil
}

// Rejected, DeadLettered and Failed are the runner's; Expired counts the queries dropped
// because their client no longer waits.
var metricNames = []string{"Queries", "Found", "Missing", "Destroyed", "Rejected", "DeadLettered", "Failed", "Expired"}

// Handle answers every query of the batch and reports the ones the queue must deliver
// again.
func (h *Handler) Handle(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	var c batch.Counters
	resp := h.runner.Run(ctx, ev, &c, func(ctx context.Context, rec *lambdaevents.SQSMessage) error {
		q, err := events.DecodeQuery([]byte(rec.Body))
		if err != nil {
			return batch.Poison(events.ErrorKind(err), err)
		}
		if age, ok := h.age(rec); ok && age > h.maxAge {
			c.Add("Expired", 1)
			h.log.Info("query expired: its client no longer waits", "messageId", rec.MessageId,
				"receiveCount", rec.Attributes["ApproximateReceiveCount"], "age", age.Round(time.Millisecond).String())
			return nil
		}
		c.Add("Queries", 1)
		status, err := h.answer(ctx, q)
		if err != nil {
			return err
		}
		c.Add(map[events.ReplyStatus]string{events.ReplyFound: "Found", events.ReplyMissing: "Missing", events.ReplyDestroyed: "Destroyed"}[status], 1)
		return nil
	})
	batch.Emit(h.metrics, "sessionquery", &c, metricNames...)
	return resp, nil
}

// age is how long ago the query reached its queue, by SQS's SentTimestamp (SQS's clock,
// not the asking instance's, which may be off).
func (h *Handler) age(rec *lambdaevents.SQSMessage) (time.Duration, bool) {
	ms, err := strconv.ParseInt(rec.Attributes["SentTimestamp"], 10, 64)
	if err != nil {
		return 0, false
	}
	return timeNow().Sub(time.UnixMilli(ms)), true
}

// answer reads the session and publishes the reply.
func (h *Handler) answer(ctx context.Context, q *events.Query) (events.ReplyStatus, error) {
	it, err := h.table.Get(ctx, record.Key(q.Cluster, q.ID))
	if err != nil {
		return "", err
	}
	r := Reply(q, it)
	body, err := events.EncodeReply(r)
	if err != nil {
		return "", fmt.Errorf("encode reply: %w", err)
	}
	_, err = h.bus.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(h.topic),
		Message:  aws.String(string(body)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"requester": {DataType: aws.String("String"), StringValue: aws.String(q.Requester)},
		},
	})
	if err != nil {
		return "", fmt.Errorf("publish reply: %w", err)
	}
	return r.Status, nil
}

// Reply builds the answer to q from the stored item (nil if none), filtering what no
// read may return: expired sessions, and pending ones (deltas whose create has not come).
func Reply(q *events.Query, it *record.Item) *events.Reply {
	r := &events.Reply{V: events.SchemaVersion, RequestID: q.RequestID, Requester: q.Requester, Status: events.ReplyMissing}
	switch {
	case it != nil && it.State == record.Destroyed:
		r.Status = events.ReplyDestroyed
	case it.Readable(timeNow()):
		r.Status = events.ReplyFound
		r.Version = it.Version[:min(16, len(it.Version))]
		r.Session = &events.Session{
			Principal: it.Principal, Group: it.Group, Created: it.Created, LastAccess: it.LastAccess,
			MaxIdle: it.MaxIdle, MaxLife: it.MaxLife, Attrs: it.Attrs,
		}
	}
	return r
}
