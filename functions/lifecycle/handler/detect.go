package handler

import (
	"fmt"
	"strings"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Outcome says what Detect made of a stream record.
type Outcome int

const (
	// Event: the record is an event of a session of this site: publish it.
	Event Outcome = iota
	// NoEvent: a change of a session that is no event (a save by its owner, a tombstone
	// swept, a destroy of a session the table never held, ...).
	NoEvent
	// OtherSite: an event whose session belongs to another site: that site's function
	// publishes it (every region's stream carries every region's changes).
	OtherSite
	// Unknown: an item this build does not know (another kind of item in the table, a
	// corrupt one): nothing to publish, and nothing a retry would change.
	Unknown
)

// The userIdentity of a stream record of a TTL deletion.
const (
	ttlIdentityType      = "Service"
	ttlIdentityPrincipal = "dynamodb.amazonaws.com"
)

// logoutSuffix ends the key of a session's cross-region logout item (an insert-only item
// of its own, next to the session's: cluster#hash#logout), which no session write can
// overwrite.
const logoutSuffix = "#logout"

// Detect turns one stream record into the lifecycle event it is, as the package doc
// says, for the function of site. It never fails: an Outcome other than Event says why
// there is nothing to publish, with a short reason for the log (never an id).
func Detect(rec *lambdaevents.DynamoDBEventRecord, site string) (*events.Lifecycle, Outcome, string) {
	pk, ok := stringKey(rec.Change.Keys, "pk")
	if !ok {
		return nil, Unknown, "no string key pk"
	}
	cluster, hash, rest, ok := splitKey(pk)
	switch {
	case !ok:
		return nil, Unknown, "key of an unknown shape"
	case rest == logoutSuffix:
		// Cross-region logout's own item: the session's tombstone tells its end (see the
		// package doc).
		return nil, NoEvent, rec.EventName + " of a logout item"
	case rest != "":
		return nil, Unknown, "key of an unknown kind of item"
	}
	old, err := image(rec.Change.OldImage)
	if err != nil {
		return nil, Unknown, "old image: " + err.Error()
	}
	cur, err := image(rec.Change.NewImage)
	if err != nil {
		return nil, Unknown, "new image: " + err.Error()
	}
	at := changeTime(rec)
	live := func(it *record.Item) bool { return it != nil && it.State == record.Active }

	// Whose session it was before this change: that instance's site publishes.
	owner := cur
	if live(old) {
		owner = old
	}
	e := &events.Lifecycle{V: events.SchemaVersion, Cluster: cluster, ID: hash}
	switch {
	case live(cur) && !live(old) && (old == nil || old.State == record.Pending):
		// Its first snapshot: the session exists from now on. (A tombstone overwritten by
		// a replicated save, MREC's last-writer-wins, is no creation: ids are never reused.)
		e.Kind, e.At, e.Instance, e.Site = events.LifecycleCreated, cur.Created, cur.Writer, cur.Site
	case live(old) && live(cur):
		if old.Writer == cur.Writer || old.Writer == "" || cur.Writer == "" {
			return nil, NoEvent, "a write by its owner"
		}
		e.Kind, e.At = events.LifecycleMoved, at.UnixMilli()
		e.Instance, e.Site, e.By, e.BySite = old.Writer, old.Site, cur.Writer, cur.Site
		e.Key = events.LifecycleKey(e.Kind, cluster, hash, cur.Version)
	case live(old) && cur != nil && cur.State == record.Destroyed:
		if deadline := old.Deadline(); !at.Before(deadline) {
			// Destroyed after its deadline: it had already ended by then.
			expired(e, old, deadline)
			break
		}
		e.Kind, e.At, e.Reason, e.By, e.BySite = events.LifecycleDestroyed, at.UnixMilli(), cur.Reason, cur.Writer, cur.Site
		e.Instance, e.Site = old.Writer, old.Site
	case live(old) && cur == nil:
		deadline := old.Deadline()
		switch {
		case isTTL(rec):
			// TTL deletes only past expiresAt (the deadline plus the grace); should the
			// clocks disagree, the session ended no later than its deletion.
			if at.Before(deadline) {
				deadline = at
			}
			expired(e, old, deadline)
		case !at.Before(deadline):
			// Deleted past its deadline by other means (a TTL deletion replicated from
			// another region, an operator): it had ended by then.
			expired(e, old, deadline)
		default:
			e.Kind, e.At, e.Reason = events.LifecycleDestroyed, at.UnixMilli(), events.ReasonDeleted
			e.Instance, e.Site = old.Writer, old.Site
		}
	default:
		return nil, NoEvent, fmt.Sprintf("%s of an item %s -> %s", rec.EventName, state(old), state(cur))
	}
	if owner.Site != "" && owner.Site != site {
		return nil, OtherSite, "site " + owner.Site
	}
	if e.Kind != events.LifecycleCreated {
		e.Principal, e.Group, e.Created = owner.Principal, owner.Group, owner.Created
	} else {
		e.Principal, e.Group, e.Created = cur.Principal, cur.Group, cur.Created
	}
	if e.Key == "" {
		e.Key = events.LifecycleKey(e.Kind, cluster, hash, "")
	}
	if err := e.Validate(); err != nil {
		// Fields of an item no client writes (a token too long, say).
		return nil, Unknown, "event: " + err.Error()
	}
	return e, Event, ""
}

// expired makes e the expiry of old at its deadline.
func expired(e *events.Lifecycle, old *record.Item, deadline time.Time) {
	e.Kind, e.At, e.Instance, e.Site = events.LifecycleExpired, deadline.UnixMilli(), old.Writer, old.Site
	e.Reason = events.ExpiredIdle
	if old.Created+old.MaxLife*1000 <= old.LastAccess+old.MaxIdle*1000 {
		e.Reason = events.ExpiredMaxLife
	}
}

// splitKey splits a table key into the session's cluster and hash and what follows them
// ("" for a session item itself, "#logout" for its logout item).
func splitKey(pk string) (cluster, hash, rest string, ok bool) {
	cluster, after, ok := strings.Cut(pk, "#")
	if !ok || cluster == "" || len(after) < 43 {
		return "", "", "", false
	}
	hash, rest = after[:43], after[43:]
	if strings.Contains(hash, "#") || rest != "" && !strings.HasPrefix(rest, "#") {
		return "", "", "", false
	}
	return cluster, hash, rest, true
}

func stringKey(keys map[string]lambdaevents.DynamoDBAttributeValue, name string) (string, bool) {
	v, ok := keys[name]
	if !ok || v.DataType() != lambdaevents.DataTypeString {
		return "", false
	}
	return v.String(), true
}

// image reads a stream image as a session item: nil for none.
func image(img map[string]lambdaevents.DynamoDBAttributeValue) (*record.Item, error) {
	if len(img) == 0 {
		return nil, nil
	}
	m := make(map[string]types.AttributeValue, len(img))
	for k, v := range img {
		av, err := attributeValue(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		m[k] = av
	}
	return record.Unmarshal(m)
}

// changeTime is when the table took the change: the record's approximate creation time
// (whole seconds on AWS), or now if the record has none.
func changeTime(rec *lambdaevents.DynamoDBEventRecord) time.Time {
	if t := rec.Change.ApproximateCreationDateTime.Time; !t.IsZero() && t.Unix() > 0 {
		return t
	}
	return timeNow()
}

// isTTL reports whether DynamoDB's TTL made the change: its records name the service.
func isTTL(rec *lambdaevents.DynamoDBEventRecord) bool {
	u := rec.UserIdentity
	return u != nil && u.Type == ttlIdentityType && u.PrincipalID == ttlIdentityPrincipal
}

func state(it *record.Item) string {
	if it == nil {
		return "none"
	}
	return string(it.State)
}

// timeNow is the function's clock, replaced by tests.
var timeNow = time.Now
