// Package handler answers failover queries: for each query on the query queue it reads
// the session with a strongly consistent read and publishes the answer on the reply
// topic, with the message attribute "requester" that routes it to the asking instance's
// own queue. This is the old products' failover read (a request topic, a response topic,
// a bounded wait), for auth servers that may not read the table themselves.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/batch"
	"github.com/sessionha/sessionha/internal/record"
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
}

// ConfigFromEnv reads the function's environment.
func ConfigFromEnv() (Config, error) {
	c := Config{Table: os.Getenv("SESSIONHA_TABLE"), ReplyTopicARN: os.Getenv("SESSIONHA_REPLY_TOPIC_ARN"), Site: os.Getenv("SESSIONHA_SITE")}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Table == "":
		return errors.New("SESSIONHA_TABLE is required: the session table's name")
	case c.ReplyTopicARN == "":
		return errors.New("SESSIONHA_REPLY_TOPIC_ARN is required: the topic answers are published on")
	case c.Parallel < 0:
		return errors.New("Parallel must not be negative")
	}
	return nil
}

// Publisher is the SNS call the handler makes.
type Publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Handler answers batches of queries.
type Handler struct {
	table    *record.Table
	bus      Publisher
	topic    string
	log      *slog.Logger
	parallel int
	metrics  interface{ Write([]byte) (int, error) }
}

// New returns a handler reading db and answering on bus.
func New(db record.DB, bus Publisher, cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 10
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return &Handler{
		table: &record.Table{DB: db, Name: cfg.Table}, bus: bus, topic: cfg.ReplyTopicARN,
		log: log.With("function", "sessionquery", "site", cfg.Site), parallel: cfg.Parallel, metrics: os.Stdout,
	}, nil
}

var metricNames = []string{"Queries", "Found", "Missing", "Destroyed", "Rejected", "Failed"}

// Handle answers every query of the batch and reports the ones that failed.
func (h *Handler) Handle(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	var c batch.Counters
	resp := batch.Run(ctx, ev, h.parallel, func(ctx context.Context, rec *lambdaevents.SQSMessage) error {
		q, err := events.DecodeQuery([]byte(rec.Body))
		if err != nil {
			c.Add("Rejected", 1)
			h.log.Warn("record rejected", "messageId", rec.MessageId, "kind", events.ErrorKind(err),
				"receiveCount", rec.Attributes["ApproximateReceiveCount"], "bytes", len(rec.Body), "reason", err.Error())
			return err
		}
		c.Add("Queries", 1)
		status, err := h.answer(ctx, q)
		if err != nil {
			c.Add("Failed", 1)
			h.log.Error("record failed", "messageId", rec.MessageId,
				"receiveCount", rec.Attributes["ApproximateReceiveCount"], "reason", err.Error())
			return err
		}
		c.Add(map[events.ReplyStatus]string{events.ReplyFound: "Found", events.ReplyMissing: "Missing", events.ReplyDestroyed: "Destroyed"}[status], 1)
		return nil
	})
	batch.Emit(h.metrics, "sessionquery", &c, metricNames...)
	return resp, nil
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
