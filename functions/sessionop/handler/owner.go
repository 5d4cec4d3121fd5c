package handler

// Superseded notices: how an instance that serves a session from memory (the client's
// owner reads) learns that its copy is no longer the newest.
//
// Why here, and not by the instance that takes a session over: this function merges
// every op of the site into the stored item, so it alone knows both the writer of the
// stored version and the writer of the op, at the moment they meet; an announcement by
// the new writer misses the races that matter (two instances writing one session at
// once, each thinking it owns it; a takeover whose writer read the item before a third
// instance's write; a takeover whose writer crashed before announcing it). The rule,
// applied in every round of the read-merge-put (record.Table.Observe), before the write:
//
//   - an op newer than the stored version, by another writer, supersedes the stored
//     version's writer (a failover took the session over);
//   - an op older than the stored version, by another writer, is superseded itself: its
//     writer believes it owns a copy that lost to a newer one;
//   - a destroy by another writer supersedes the stored version's writer, and any op on a
//     tombstone supersedes its own writer: the session is gone, even if its logout notice
//     was lost.
//
// The notice (events.Superseded) goes on the site's notice topic with the message
// attribute "owner", which each instance's queue filters on. It is published before the
// write, so a failure to publish fails the record and the queue delivers it again: the
// notice is sent at least once with the op that makes it due (a notice whose write then
// loses a race is harmless: an instance told too much only reads once more). Only a
// refusal that retrying cannot cure (the topic missing, publishing not allowed) lets the
// op through without its notice, logged and counted as SupersededFailed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/batch"
	"github.com/sessionha/sessionha/internal/record"
)

// Publisher is the part of SNS the superseded notices use.
type Publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// publishTimeout bounds one notice's publish, the SDK's retries included: well inside
// the function's timeout, so that a slow bus fails the record rather than the batch.
const publishTimeout = 3 * time.Second

type owners struct {
	pub   Publisher
	topic string
	log   *slog.Logger
}

// NotifyOwners makes the handler publish a Superseded notice on topic (the site's notice
// topic, SESSIONHA_NOTICE_TOPIC_ARN) for every op that supersedes an instance's copy of
// a session, as the package's rule says. Without it no notice is sent, and instances
// with owner reads keep serving a session another instance took over.
func (h *Handler) NotifyOwners(pub Publisher, topic string) {
	o := &owners{pub: pub, topic: topic, log: h.log}
	h.table.Observe = o.observe
}

// versionWriter is the writer part of a record version (hlc/writer).
func versionWriter(v string) string { _, w, _ := strings.Cut(v, "/"); return w }

// tell says who must learn that op, merged into the stored item cur, supersedes its copy:
// owner "" for nobody; newer is the version that supersedes it.
func tell(cur *record.Item, op record.Op, now time.Time) (owner, newer string, destroyed bool) {
	opWriter, curWriter := versionWriter(op.Version), versionWriter(cur.Version)
	switch {
	case cur.State == record.Destroyed:
		if op.Kind != record.Destroy {
			return opWriter, cur.Version, true
		}
	case cur.Over(now) && op.Kind != record.Destroy:
		// Ended by the table's clock: the op changes nothing, and its writer's copy,
		// which its own clock may still find alive, is over too.
		return opWriter, max(cur.Version, op.Version), true
	case op.Kind == record.Destroy:
		if curWriter != opWriter {
			return curWriter, max(cur.Version, op.Version), true
		}
	case op.Version > cur.Version && curWriter != opWriter:
		return curWriter, op.Version, false
	case op.Version < cur.Version && curWriter != opWriter:
		return opWriter, cur.Version, false
	}
	return "", "", false
}

func (o *owners) observe(ctx context.Context, cur *record.Item, op record.Op) error {
	owner, newer, destroyed := tell(cur, op, time.Now())
	if owner == "" {
		return nil
	}
	c := countersOf(ctx)
	cluster, id, _ := strings.Cut(op.Key, "#")
	hlc, writer, _ := strings.Cut(newer, "/")
	body, err := events.EncodeSuperseded(&events.Superseded{
		V: events.SchemaVersion, Cluster: cluster, ID: id, Owner: owner, Version: hlc, Writer: writer,
		Destroyed: destroyed, At: time.Now().UnixMilli(),
	})
	if err != nil {
		// A version or writer this build cannot name (an item of an older layout):
		// nothing to retry.
		c.Add("SupersededFailed", 1)
		o.log.Warn("superseded notice not sent: cannot encode it", "kind", events.ErrorKind(err), "reason", err.Error())
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err = o.pub.Publish(pctx, &sns.PublishInput{
		TopicArn: aws.String(o.topic), Message: aws.String(string(body)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"owner": {DataType: aws.String("String"), StringValue: aws.String(owner)},
		},
	})
	switch {
	case err == nil:
		c.Add("Superseded", 1)
		return nil
	case refused(err):
		c.Add("SupersededFailed", 1)
		o.log.Error("superseded notice refused by the bus; the op is applied without it, and the instance told keeps serving its copy until it reads again",
			"reason", err.Error())
		return nil
	}
	return fmt.Errorf("publish superseded notice (the op is delivered again): %w", err)
}

// refused reports whether the bus refused a publish for good (no such topic, not
// allowed, invalid): an error of the caller's, not throttling or a server's failure.
func refused(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorFault() == smithy.FaultServer {
		return false
	}
	switch api.ErrorCode() {
	case "NotFound", "AuthorizationError", "InvalidParameter", "InvalidParameterValue", "KMSDisabled", "KMSNotFound", "KMSAccessDenied":
		return true
	}
	return false
}

type countersKey struct{}

// withCounters carries a batch's counters to the table's Observe, which Apply calls.
func withCounters(ctx context.Context, c *batch.Counters) context.Context {
	return context.WithValue(ctx, countersKey{}, c)
}

func countersOf(ctx context.Context) *batch.Counters {
	if c, ok := ctx.Value(countersKey{}).(*batch.Counters); ok {
		return c
	}
	return &batch.Counters{} // Apply called outside Handle: counted nowhere
}
