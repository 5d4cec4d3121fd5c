// Package handler publishes sessions' lifecycle events (events.Lifecycle: created,
// destroyed, expired, moved) from the session table's stream, for operators, auditors and
// the apps' own instances (client.Store.OnLifecycle). On AWS the stream is the table's
// DynamoDB stream (NEW_AND_OLD_IMAGES) in the site's region, read by a Lambda event source
// mapping; locally the same records come from the emulator's change feed through the
// Lambda runner (local/lambdarunner's stream mapping). The handler is the same.
//
// # What each record is
//
// A record's old and new images are the session's item before and after the change
// (internal/record). A session is live when its item is active (a snapshot merged, not a
// tombstone, not pending).
//
//   - created: the new image is live and the old one is none or pending (deltas only):
//     its first snapshot. At is the session's creation.
//   - moved: both live, and the item's writer changed: another instance wrote the
//     session, a failover. Instance is the old writer, By the new. At is the write's time.
//   - destroyed: the old image is live and the new one a tombstone, written before the
//     session's deadline. The tombstone tells why (its destroy's reason: "logout",
//     "revoked", "revoke-all", "session-cap", "sso-group", "renew", ...), who (By) and
//     from which site (BySite). An item deleted before its deadline other than by TTL
//     (an operator) is destroyed too, with reason "deleted".
//   - expired: the old image is live and the item is deleted by TTL (its record's
//     userIdentity is the service, principal dynamodb.amazonaws.com), or deleted or
//     tombstoned at or after its deadline. Reason "idle" or "max-life", whichever came
//     first, and At the deadline itself, computed from the old image: when the session
//     really ended, not when the table noticed.
//   - a logout item (key cluster#hash#logout: cross-region logout's insert-only item,
//     written with the tombstone) is no event of its own. The tombstone tells the end,
//     with why, by whom and whose session it was; an event made from the logout item
//     could tell none of that (the item holds only the destroy's version), and two
//     different events under one key would leave a consumer with whichever came first.
//     When a replicated save overwrote the tombstone (last writer wins across regions),
//     the end is told by the tombstone the next merge of the session writes over it, or
//     by its expiry.
//   - anything else (a save by the owner, a tombstone swept, a destroy of a session the
//     table never held, items of kinds this build does not know) is no event.
//
// # Expired: when
//
// Nothing in the table changes when a session passes its deadline: DynamoDB deletes it
// after its TTL, which the store sets to the deadline plus the tombstone grace (30 min by
// default, so that late ops still find it), and AWS's TTL deletes within a few days of
// that, usually far sooner. So an expired event comes when the table deletes the item,
// or when an op arrives for the ended session (a logout of an expired session: the
// tombstone's write is past the deadline), whichever is first; it carries the deadline
// as At, so a consumer knows when the session ended, late or not. Doing better would take
// a scheduled scan of the table or a timer per session, paid on every write; an app that
// must act at the deadline itself knows it (SessionInfo.ExpiresAt).
//
// # Which region publishes
//
// In a global table every replica's stream carries every change, replicated ones too, and
// a record does not say where the change was made. Each region's function therefore
// publishes only the events of its own site's sessions: the site of the session's owner
// before the change (the old image's, if it was live; else the new image's: every item
// carries its last writer's site). So each event is published once, by one region, on
// that site's lifecycle topic; an instance's events come on its own site's topic. A
// session's events wait while its site's region is down (its stream keeps 24 h and the
// mapping resumes), and are lost with a region lost for good. Subscribe to every site's
// topic to hear all sessions.
//
// # At least once
//
// Each event carries its idempotency key (events.LifecycleKey): records are retried
// (partial batch failures name the first record whose event could not be published;
// Lambda retries from it), so an event may come twice, and the key makes the copies one.
// An event is published before its record counts as done, never after. Records that can
// never become an event (unknown or corrupt items) are counted and skipped, not retried:
// a retry would block the stream's shard for nothing.
package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/batch"
)

// Config is the function's configuration.
type Config struct {
	// Site is the site whose sessions' events this function publishes. Required
	// (SESSIONHA_SITE).
	Site string
	// TopicARN is the site's lifecycle topic. Required (SESSIONHA_LIFECYCLE_TOPIC_ARN).
	TopicARN string
}

// ConfigFromEnv reads the function's environment.
func ConfigFromEnv() (Config, error) {
	c := Config{Site: os.Getenv("SESSIONHA_SITE"), TopicARN: os.Getenv("SESSIONHA_LIFECYCLE_TOPIC_ARN")}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Site == "":
		return errors.New("SESSIONHA_SITE is required: the site whose sessions' events this function publishes")
	case c.TopicARN == "":
		return errors.New("SESSIONHA_LIFECYCLE_TOPIC_ARN is required: the topic lifecycle events are published on")
	}
	return nil
}

// Publisher is the SNS call the handler makes.
type Publisher interface {
	PublishBatch(context.Context, *sns.PublishBatchInput, ...func(*sns.Options)) (*sns.PublishBatchOutput, error)
}

// Handler publishes the lifecycle events of batches of stream records.
type Handler struct {
	cfg     Config
	bus     Publisher
	log     *slog.Logger
	metrics io.Writer // stdout in Lambda, where CloudWatch reads EMF lines
}

// New returns a handler publishing on bus.
func New(bus Publisher, cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return &Handler{cfg: cfg, bus: bus, log: log.With("function", "lifecycle", "site", cfg.Site), metrics: os.Stdout}, nil
}

// MetricNames are the counters the function emits (EMF, one line per batch): records
// read; events published, by kind; records of another site's sessions; records that are
// no event; unknown or corrupt items skipped; events not published (their records are
// retried).
var MetricNames = []string{"Records", "Created", "Destroyed", "Expired", "Moved", "OtherSite", "NoEvent", "Unknown", "Failed"}

// publishBatch is SNS's limit on a PublishBatch.
const publishBatch = 10

// Handle publishes the events of ev's records and reports the first record whose event
// could not be published: Lambda retries from there (partial batch failure).
func (h *Handler) Handle(ctx context.Context, ev lambdaevents.DynamoDBEvent) (lambdaevents.DynamoDBEventResponse, error) {
	var c batch.Counters
	type pending struct {
		rec int // index in ev.Records
		e   *events.Lifecycle
	}
	var todo []pending
	failed := len(ev.Records) // index of the first record that fails: Lambda retries from it
	for i := range ev.Records {
		rec := &ev.Records[i]
		c.Add("Records", 1)
		e, outcome, why, err := h.detect(rec)
		if err != nil {
			// A bug, not the record's fault: retry it, and after the mapping's retries
			// its batch goes to the on-failure destination, where nothing is lost.
			h.log.Error("record not read", "sequenceNumber", rec.Change.SequenceNumber, "reason", err.Error())
			failed = i
			break
		}
		switch outcome {
		case Event:
			todo = append(todo, pending{i, e})
		case OtherSite:
			c.Add("OtherSite", 1)
		case NoEvent:
			c.Add("NoEvent", 1)
		case Unknown:
			c.Add("Unknown", 1)
			h.log.Warn("record skipped: not a session item this build knows", "sequenceNumber", rec.Change.SequenceNumber,
				"eventName", rec.EventName, "reason", why)
		}
	}
	for start := 0; start < len(todo); start += publishBatch {
		chunk := todo[start:min(start+publishBatch, len(todo))]
		es := make([]*events.Lifecycle, len(chunk))
		for i, p := range chunk {
			es[i] = p.e
		}
		bad := h.publish(ctx, es)
		for i, p := range chunk {
			if bad[i] != nil {
				c.Add("Failed", 1)
				if p.rec < failed {
					failed = p.rec
					h.log.Warn("event not published: its record is retried", "sequenceNumber", ev.Records[p.rec].Change.SequenceNumber,
						"kind", string(p.e.Kind), "reason", bad[i].Error())
				}
				continue
			}
			c.Add(map[events.LifecycleKind]string{events.LifecycleCreated: "Created", events.LifecycleDestroyed: "Destroyed",
				events.LifecycleExpired: "Expired", events.LifecycleMoved: "Moved"}[p.e.Kind], 1)
		}
	}
	batch.Emit(h.metrics, "lifecycle", &c, MetricNames...)
	var resp lambdaevents.DynamoDBEventResponse
	if failed < len(ev.Records) {
		resp.BatchItemFailures = []lambdaevents.DynamoDBBatchItemFailure{{ItemIdentifier: ev.Records[failed].Change.SequenceNumber}}
	}
	return resp, nil
}

// detect is Detect, with a panic turned into an error: the handler never panics.
func (h *Handler) detect(rec *lambdaevents.DynamoDBEventRecord) (e *events.Lifecycle, outcome Outcome, why string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	e, outcome, why = Detect(rec, h.cfg.Site)
	return e, outcome, why, nil
}

// publish sends up to ten events in one PublishBatch and returns each one's error.
func (h *Handler) publish(ctx context.Context, es []*events.Lifecycle) []error {
	errs := make([]error, len(es))
	in := &sns.PublishBatchInput{TopicArn: aws.String(h.cfg.TopicARN)}
	for i, e := range es {
		body, err := events.EncodeLifecycle(e)
		if err != nil {
			errs[i] = err // Detect validated it: not reachable
			continue
		}
		in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, snstypes.PublishBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), Message: aws.String(string(body)), MessageAttributes: Attributes(e),
		})
	}
	if len(in.PublishBatchRequestEntries) == 0 {
		return errs
	}
	out, err := h.bus.PublishBatch(ctx, in)
	if err != nil {
		for _, en := range in.PublishBatchRequestEntries {
			i, _ := strconv.Atoi(aws.ToString(en.Id))
			errs[i] = fmt.Errorf("publish: %w", err)
		}
		return errs
	}
	for _, f := range out.Failed {
		i, err := strconv.Atoi(aws.ToString(f.Id))
		if err != nil || i < 0 || i >= len(es) {
			continue
		}
		errs[i] = fmt.Errorf("publish: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
	}
	// An entry SNS neither took nor refused (it must do one of them) counts as failed.
	took := map[string]bool{}
	for _, s := range out.Successful {
		took[aws.ToString(s.Id)] = true
	}
	for _, en := range in.PublishBatchRequestEntries {
		i, _ := strconv.Atoi(aws.ToString(en.Id))
		if !took[aws.ToString(en.Id)] && errs[i] == nil {
			errs[i] = errors.New("publish: SNS did not answer for this entry")
		}
	}
	return errs
}

// Attributes are the message attributes an event is published with (events'
// LifecycleAttr names), for subscriptions' filter policies.
func Attributes(e *events.Lifecycle) map[string]snstypes.MessageAttributeValue {
	a := map[string]snstypes.MessageAttributeValue{
		events.LifecycleAttrKind:    {DataType: aws.String("String"), StringValue: aws.String(string(e.Kind))},
		events.LifecycleAttrCluster: {DataType: aws.String("String"), StringValue: aws.String(e.Cluster)},
	}
	if e.Instance != "" {
		a[events.LifecycleAttrInstance] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(e.Instance)}
	}
	if e.Site != "" {
		a[events.LifecycleAttrSite] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(e.Site)}
	}
	return a
}
