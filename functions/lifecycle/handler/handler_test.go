package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

const sessionID = "tF1p0f0V3rG4Ew1k3U2cJt9VfWm3b6Xy7Qe0N8sA2dE" // what a cookie holds: never in an event

var (
	hash = events.HashID(sessionID)
	key  = record.Key("default", hash)
	t0   = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// live is an active session item of writer wr of site, created at t0 (30 min idle, 8 h
// life), last accessed la after t0.
func live(wr, site string, la time.Duration) *record.Item {
	return &record.Item{Key: key, Rev: 1, Version: record.Version(fmt.Sprintf("%016x", 100+la.Milliseconds()), wr),
		State: record.Active, Principal: "alice", Group: "portal", Created: t0.UnixMilli(), LastAccess: t0.Add(la).UnixMilli(),
		MaxIdle: 1800, MaxLife: 8 * 3600, Site: site, Writer: wr, Floor: "x", Attrs: map[string][]byte{"cart": []byte("secret value")},
		ExpiresAt: t0.Add(la + 30*time.Minute + 30*time.Minute).Unix()}
}

func tombstone(by, site, reason string) *record.Item {
	return &record.Item{Key: key, Rev: 2, Version: record.Version("00000000000000ff", by), State: record.Destroyed,
		Writer: by, Site: site, Reason: reason, DestroyVersion: record.Version("00000000000000ff", by), ExpiresAt: t0.Add(9 * time.Hour).Unix()}
}

// toLambda converts a stored item's attributes to a stream image's.
func toLambda(t *testing.T, av types.AttributeValue) lambdaevents.DynamoDBAttributeValue {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return lambdaevents.NewStringAttribute(v.Value)
	case *types.AttributeValueMemberN:
		return lambdaevents.NewNumberAttribute(v.Value)
	case *types.AttributeValueMemberB:
		return lambdaevents.NewBinaryAttribute(v.Value)
	case *types.AttributeValueMemberM:
		m := map[string]lambdaevents.DynamoDBAttributeValue{}
		for k, e := range v.Value {
			m[k] = toLambda(t, e)
		}
		return lambdaevents.NewMapAttribute(m)
	}
	t.Fatalf("no conversion for %T", av)
	return lambdaevents.DynamoDBAttributeValue{}
}

func img(t *testing.T, it *record.Item) map[string]lambdaevents.DynamoDBAttributeValue {
	if it == nil {
		return nil
	}
	out := map[string]lambdaevents.DynamoDBAttributeValue{}
	for k, v := range record.Marshal(it) {
		out[k] = toLambda(t, v)
	}
	return out
}

var seq int

// change is the stream record of an item going from old to cur at time at.
func change(t *testing.T, old, cur *record.Item, at time.Time) lambdaevents.DynamoDBEventRecord {
	name := "MODIFY"
	switch {
	case old == nil:
		name = "INSERT"
	case cur == nil:
		name = "REMOVE"
	}
	seq++
	return lambdaevents.DynamoDBEventRecord{
		EventName: name, EventSource: "aws:dynamodb", AWSRegion: "eu-west-1", EventID: strconv.Itoa(seq),
		Change: lambdaevents.DynamoDBStreamRecord{
			Keys:     map[string]lambdaevents.DynamoDBAttributeValue{"pk": lambdaevents.NewStringAttribute(key)},
			OldImage: img(t, old), NewImage: img(t, cur), SequenceNumber: fmt.Sprintf("%021d", seq),
			ApproximateCreationDateTime: lambdaevents.SecondsEpochTime{Time: at}, StreamViewType: "NEW_AND_OLD_IMAGES",
		},
	}
}

func ttl(r lambdaevents.DynamoDBEventRecord) lambdaevents.DynamoDBEventRecord {
	r.UserIdentity = &lambdaevents.DynamoDBUserIdentity{Type: "Service", PrincipalID: "dynamodb.amazonaws.com"}
	return r
}

// TestDetect: each way a session item changes, and what it is to the function of site eu.
func TestDetect(t *testing.T) {
	ended := events.LifecycleKey(events.LifecycleDestroyed, "default", hash, "")
	pending := live("a1", "eu", 0)
	pending.State, pending.Floor = record.Pending, ""
	moved := live("a2", "eu", time.Minute)
	for _, tc := range []struct {
		name    string
		rec     lambdaevents.DynamoDBEventRecord
		outcome Outcome
		want    events.Lifecycle // compared where set, Key always
	}{
		{"create", change(t, nil, live("a1", "eu", 0), t0), Event,
			events.Lifecycle{Kind: events.LifecycleCreated, Instance: "a1", Site: "eu", At: t0.UnixMilli(),
				Key: events.LifecycleKey(events.LifecycleCreated, "default", hash, "")}},
		{"first snapshot after deltas", change(t, pending, live("a1", "eu", 0), t0), Event,
			events.Lifecycle{Kind: events.LifecycleCreated, Instance: "a1", Site: "eu", Key: events.LifecycleKey(events.LifecycleCreated, "default", hash, "")}},
		{"save by its owner", change(t, live("a1", "eu", 0), live("a1", "eu", time.Minute), t0.Add(time.Minute)), NoEvent, events.Lifecycle{}},
		{"failover write", change(t, live("a1", "eu", 0), moved, t0.Add(time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleMoved, Instance: "a1", Site: "eu", By: "a2", BySite: "eu", At: t0.Add(time.Minute).UnixMilli(),
				Key: events.LifecycleKey(events.LifecycleMoved, "default", hash, moved.Version)}},
		{"taken over from another site", change(t, live("a1", "eu", 0), live("b1", "us", time.Minute), t0.Add(time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleMoved, Instance: "a1", Site: "eu", By: "b1", BySite: "us"}},
		{"logout", change(t, live("a1", "eu", 0), tombstone("a1", "eu", "logout"), t0.Add(2*time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleDestroyed, Reason: "logout", Instance: "a1", Site: "eu", By: "a1", BySite: "eu", At: t0.Add(2 * time.Minute).UnixMilli(), Key: ended}},
		{"revoked from another site", change(t, live("a1", "eu", 0), tombstone("b7", "us", "revoked"), t0.Add(2*time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleDestroyed, Reason: "revoked", Instance: "a1", Site: "eu", By: "b7", BySite: "us", Key: ended}},
		{"logout after the deadline", change(t, live("a1", "eu", 0), tombstone("a1", "eu", "logout"), t0.Add(31*time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleExpired, Reason: events.ExpiredIdle, Instance: "a1", At: t0.Add(30 * time.Minute).UnixMilli(), Key: ended}},
		{"TTL deletion, idle", ttl(change(t, live("a1", "eu", 10*time.Minute), nil, t0.Add(5*time.Hour))), Event,
			events.Lifecycle{Kind: events.LifecycleExpired, Reason: events.ExpiredIdle, Instance: "a1", Site: "eu", At: t0.Add(40 * time.Minute).UnixMilli(), Key: ended}},
		{"TTL deletion, max life", ttl(change(t, live("a1", "eu", 7*time.Hour+50*time.Minute), nil, t0.Add(9*time.Hour))), Event,
			events.Lifecycle{Kind: events.LifecycleExpired, Reason: events.ExpiredMaxLife, At: t0.Add(8 * time.Hour).UnixMilli(), Key: ended}},
		{"deletion replicated past the deadline", change(t, live("a1", "eu", 0), nil, t0.Add(2*time.Hour)), Event,
			events.Lifecycle{Kind: events.LifecycleExpired, Reason: events.ExpiredIdle, Key: ended}},
		{"deleted by an operator", change(t, live("a1", "eu", 0), nil, t0.Add(time.Minute)), Event,
			events.Lifecycle{Kind: events.LifecycleDestroyed, Reason: events.ReasonDeleted, Instance: "a1", Key: ended}},
		{"tombstone swept", ttl(change(t, tombstone("a1", "eu", "logout"), nil, t0.Add(10*time.Hour))), NoEvent, events.Lifecycle{}},
		{"destroy of a session never stored", change(t, nil, tombstone("a1", "eu", "logout"), t0), NoEvent, events.Lifecycle{}},
		{"destroy of a pending session", change(t, pending, tombstone("a1", "eu", "logout"), t0), NoEvent, events.Lifecycle{}},
		{"tombstone overwritten by a replicated save", change(t, tombstone("a1", "eu", "logout"), live("b1", "us", time.Minute), t0), NoEvent, events.Lifecycle{}},
		{"created at another site", change(t, nil, live("b1", "us", 0), t0), OtherSite, events.Lifecycle{}},
		{"ended at another site's session", change(t, live("b1", "us", 0), tombstone("a1", "eu", "revoked"), t0.Add(time.Minute)), OtherSite, events.Lifecycle{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, outcome, why := Detect(&tc.rec, "eu")
			if outcome != tc.outcome {
				t.Fatalf("outcome %d (%s), want %d", outcome, why, tc.outcome)
			}
			if outcome != Event {
				if e != nil {
					t.Errorf("an event with outcome %d", outcome)
				}
				return
			}
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
			w := tc.want
			check := func(name string, got, want any, set bool) {
				if set && got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			check("kind", e.Kind, w.Kind, true)
			check("key", e.Key, w.Key, w.Key != "")
			check("reason", e.Reason, w.Reason, true)
			check("instance", e.Instance, w.Instance, w.Instance != "")
			check("site", e.Site, w.Site, w.Site != "")
			check("by", e.By, w.By, w.By != "")
			check("bySite", e.BySite, w.BySite, w.BySite != "")
			check("at", e.At, w.At, w.At != 0)
			check("cluster", e.Cluster, "default", true)
			check("id", e.ID, hash, true)
			check("principal", e.Principal, "alice", true)
			check("created", e.Created, t0.UnixMilli(), true)
			body, _ := events.EncodeLifecycle(e)
			if bytes.Contains(body, []byte(sessionID)) || bytes.Contains(body, []byte("secret value")) || bytes.Contains(body, []byte("c2VjcmV0IHZhbHVl")) {
				t.Errorf("the event carries the session id or an attribute value: %s", body)
			}
		})
	}
}

// TestDetectOtherItems: items that are not sessions are no event and no failure; a
// logout item (cross-region logout's) is known, and no event of its own: the session's
// tombstone tells its end.
func TestDetectOtherItems(t *testing.T) {
	rec := func(pk string, newImg map[string]lambdaevents.DynamoDBAttributeValue) lambdaevents.DynamoDBEventRecord {
		r := change(t, nil, nil, t0)
		r.EventName = "INSERT"
		r.Change.Keys = map[string]lambdaevents.DynamoDBAttributeValue{"pk": lambdaevents.NewStringAttribute(pk)}
		r.Change.NewImage = newImg
		return r
	}
	s := lambdaevents.NewStringAttribute
	for _, tc := range []struct {
		name    string
		rec     lambdaevents.DynamoDBEventRecord
		outcome Outcome
	}{
		{"a key of another shape", rec("config", map[string]lambdaevents.DynamoDBAttributeValue{"pk": s("config")}), Unknown},
		{"another kind of item of a session", rec(key+"#audit", map[string]lambdaevents.DynamoDBAttributeValue{"pk": s(key + "#audit")}), Unknown},
		{"a number key", func() lambdaevents.DynamoDBEventRecord {
			r := rec(key, nil)
			r.Change.Keys = map[string]lambdaevents.DynamoDBAttributeValue{"pk": lambdaevents.NewNumberAttribute("1")}
			return r
		}(), Unknown},
		{"a corrupt session item", rec(key, map[string]lambdaevents.DynamoDBAttributeValue{"pk": s(key), "st": s("zombie")}), Unknown},
		{"a logout item", rec(key+"#logout", map[string]lambdaevents.DynamoDBAttributeValue{"pk": s(key + "#logout"), "st": s("destroyed")}), NoEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, outcome, why := Detect(&tc.rec, "eu"); outcome != tc.outcome {
				t.Errorf("outcome %d (%s), want %d", outcome, why, tc.outcome)
			}
		})
	}
}

// fakeSNS records PublishBatch calls; fail decides, per message body, whether SNS refuses
// that entry, and callErr fails whole calls.
type fakeSNS struct {
	mu      sync.Mutex
	calls   int
	sent    []snstypes.PublishBatchRequestEntry
	fail    func(body string) bool
	callErr error
}

func (f *fakeSNS) PublishBatch(_ context.Context, in *sns.PublishBatchInput, _ ...func(*sns.Options)) (*sns.PublishBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(in.PublishBatchRequestEntries) > 10 {
		return nil, errors.New("TooManyEntriesInBatchRequest")
	}
	if f.callErr != nil {
		return nil, f.callErr
	}
	out := &sns.PublishBatchOutput{}
	for _, e := range in.PublishBatchRequestEntries {
		if f.fail != nil && f.fail(aws.ToString(e.Message)) {
			out.Failed = append(out.Failed, snstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), SenderFault: false})
			continue
		}
		f.sent = append(f.sent, e)
		out.Successful = append(out.Successful, snstypes.PublishBatchResultEntry{Id: e.Id, MessageId: aws.String("m")})
	}
	return out, nil
}

func newHandler(t *testing.T, bus Publisher) (*Handler, *bytes.Buffer) {
	h, err := New(bus, Config{Site: "eu", TopicARN: "arn:aws:sns:eu-west-1:000000000000:sessionha-eu-lifecycle"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	h.metrics = &metrics
	return h, &metrics
}

// sessions makes n sessions' creation records, then their logouts.
func sessions(t *testing.T, n int) []lambdaevents.DynamoDBEventRecord {
	var recs []lambdaevents.DynamoDBEventRecord
	for i := range n {
		k := record.Key("default", events.HashID(fmt.Sprint("session-", i)))
		it := live("a1", "eu", 0)
		it.Key = k
		r := change(t, nil, it, t0)
		r.Change.Keys["pk"] = lambdaevents.NewStringAttribute(k)
		recs = append(recs, r)
	}
	return recs
}

// TestHandlePublishes: every event is published with its attributes, ten per call; a
// batch that publishes everything reports no failure.
func TestHandlePublishes(t *testing.T) {
	bus := &fakeSNS{}
	h, metrics := newHandler(t, bus)
	recs := append(sessions(t, 23), change(t, live("a1", "eu", 0), live("a1", "eu", time.Second), t0)) // and a save: no event
	resp, err := h.Handle(context.Background(), lambdaevents.DynamoDBEvent{Records: recs})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle: %+v %v", resp, err)
	}
	if len(bus.sent) != 23 || bus.calls != 3 {
		t.Fatalf("%d events in %d calls, want 23 in 3", len(bus.sent), bus.calls)
	}
	a := bus.sent[0].MessageAttributes
	if aws.ToString(a["lifecycle"].StringValue) != "created" || aws.ToString(a["instance"].StringValue) != "a1" ||
		aws.ToString(a["site"].StringValue) != "eu" || aws.ToString(a["cluster"].StringValue) != "default" {
		t.Errorf("attributes %+v", a)
	}
	if _, err := events.DecodeLifecycle([]byte(aws.ToString(bus.sent[0].Message))); err != nil {
		t.Errorf("published %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(metrics.Bytes(), &m); err != nil || m["Records"] != 24.0 || m["Created"] != 23.0 || m["NoEvent"] != 1.0 {
		t.Errorf("metrics %s (%v)", metrics.String(), err)
	}
}

// TestHandlePartialFailure: when an event cannot be published, the response names its
// record, the first that failed, so that Lambda retries from it; the events before it are
// out, and a retry publishes the rest with the same keys.
func TestHandlePartialFailure(t *testing.T) {
	recs := sessions(t, 15)
	keyOf := func(r lambdaevents.DynamoDBEventRecord) string {
		e, _, _ := Detect(&r, "eu")
		return e.Key
	}
	bad := map[string]bool{keyOf(recs[6]): true, keyOf(recs[12]): true}
	bus := &fakeSNS{fail: func(body string) bool {
		for k := range bad {
			if strings.Contains(body, k) {
				return true
			}
		}
		return false
	}}
	h, _ := newHandler(t, bus)
	resp, _ := h.Handle(context.Background(), lambdaevents.DynamoDBEvent{Records: recs})
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != recs[6].Change.SequenceNumber {
		t.Fatalf("failures %+v, want the 7th record's sequence number %s", resp.BatchItemFailures, recs[6].Change.SequenceNumber)
	}
	// Lambda retries from the checkpoint: records 6.. again, and now SNS takes them.
	bus.fail = nil
	resp, _ = h.Handle(context.Background(), lambdaevents.DynamoDBEvent{Records: recs[6:]})
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("retry failed: %+v", resp)
	}
	published := map[string]int{}
	for _, e := range bus.sent {
		ev, err := events.DecodeLifecycle([]byte(aws.ToString(e.Message)))
		if err != nil {
			t.Fatal(err)
		}
		published[ev.Key]++
	}
	for i, r := range recs {
		if published[keyOf(r)] == 0 {
			t.Errorf("record %d's event never published", i)
		}
	}
	// A whole call refused: the first record with an event is the checkpoint.
	bus.callErr = errors.New("ThrottledException")
	recs = append([]lambdaevents.DynamoDBEventRecord{change(t, live("a1", "eu", 0), live("a1", "eu", time.Second), t0)}, sessions(t, 2)...)
	resp, _ = h.Handle(context.Background(), lambdaevents.DynamoDBEvent{Records: recs})
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != recs[1].Change.SequenceNumber {
		t.Fatalf("a refused call: failures %+v, want the second record's", resp.BatchItemFailures)
	}
}

// TestHandleSkipsUnknownItems: an item this build does not know is skipped, never retried
// (a retry would block the shard for nothing), and the batch goes on.
func TestHandleSkipsUnknownItems(t *testing.T) {
	bus := &fakeSNS{}
	h, metrics := newHandler(t, bus)
	odd := change(t, nil, nil, t0)
	odd.EventName = "INSERT"
	odd.Change.Keys = map[string]lambdaevents.DynamoDBAttributeValue{"pk": lambdaevents.NewStringAttribute("something-else")}
	recs := append([]lambdaevents.DynamoDBEventRecord{odd}, sessions(t, 1)...)
	resp, err := h.Handle(context.Background(), lambdaevents.DynamoDBEvent{Records: recs})
	if err != nil || len(resp.BatchItemFailures) != 0 || len(bus.sent) != 1 {
		t.Fatalf("resp %+v err %v sent %d", resp, err, len(bus.sent))
	}
	if !strings.Contains(metrics.String(), `"Unknown":1`) {
		t.Errorf("metrics %s", metrics.String())
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("SESSIONHA_SITE", "")
	t.Setenv("SESSIONHA_LIFECYCLE_TOPIC_ARN", "arn:x")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_SITE") {
		t.Errorf("no site: %v", err)
	}
	t.Setenv("SESSIONHA_SITE", "eu")
	t.Setenv("SESSIONHA_LIFECYCLE_TOPIC_ARN", "")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_LIFECYCLE_TOPIC_ARN") {
		t.Errorf("no topic: %v", err)
	}
	t.Setenv("SESSIONHA_LIFECYCLE_TOPIC_ARN", "arn:x")
	if c, err := ConfigFromEnv(); err != nil || c.Site != "eu" || c.TopicARN != "arn:x" {
		t.Errorf("%+v %v", c, err)
	}
}
