package events

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"
)

// LifecycleKind says what happened to a session.
type LifecycleKind string

// The kinds of Lifecycle event.
const (
	// LifecycleCreated: the session reached the table (its first snapshot was applied).
	LifecycleCreated LifecycleKind = "created"
	// LifecycleDestroyed: the session was destroyed before its deadline; Reason says why
	// (the destroy's reason: the client's are ReasonLogout and the others below), By and
	// BySite who destroyed it.
	LifecycleDestroyed LifecycleKind = "destroyed"
	// LifecycleExpired: the session passed its deadline; Reason is ExpiredIdle or
	// ExpiredMaxLife, and At the deadline itself, not when the table noticed.
	LifecycleExpired LifecycleKind = "expired"
	// LifecycleMoved: another instance wrote the session (a failover took it over); the
	// event names the instance it moved away from (Instance, Site) and the one it moved
	// to (By, BySite).
	LifecycleMoved LifecycleKind = "moved"
)

// Reasons a destroyed event carries: what the client's destroys say, and ReasonDeleted
// for an item deleted from the table other than by TTL (an operator's delete). A destroy
// op may give any reason of up to 64 bytes; "" means it gave none.
const (
	ReasonLogout     = "logout"      // Store.Destroy
	ReasonRevoked    = "revoked"     // Store.Revoke: one of a user's sessions
	ReasonRevokeAll  = "revoke-all"  // Store.DestroyAll: every session of a user
	ReasonSessionCap = "session-cap" // the user's oldest sessions beyond MaxSessionsPerPrincipal
	ReasonSSOGroup   = "sso-group"   // a logout of another session of its SSO group
	ReasonRenew      = "renew"       // Store.Renew replaced its id
	ReasonDeleted    = "deleted"     // the item was deleted from the table, not by TTL
)

// Reasons an expired event carries.
const (
	ExpiredIdle    = "idle"     // last access + max idle came first
	ExpiredMaxLife = "max-life" // created + max life came first
)

// Message attributes the lifecycle function publishes each event with, for SNS filter
// policies: an instance's queue takes the events of its own sessions
// ({"instance": [its id]}), an auditor's everything.
const (
	LifecycleAttrKind     = "lifecycle" // the Kind; also what tells a lifecycle event from other messages
	LifecycleAttrCluster  = "cluster"
	LifecycleAttrInstance = "instance" // Instance, when known
	LifecycleAttrSite     = "site"     // Site, when known
)

// Lifecycle is one event of a session's life, published on the lifecycle topic: at least
// once, in no particular order (a consumer sorts by At if it cares), never with the
// session id. The lifecycle function makes them from the table's stream
// (functions/lifecycle).
//
// Key is the event's idempotency key (LifecycleKey): every delivery of one event carries
// the same, from whichever region or retry it comes, so that a consumer keeps the first
// and drops the rest (a conditional put keyed by it, or an SQS FIFO deduplication id: it
// is 43 characters). A session has at most one created event and one end: destroyed and
// expired share a key, so a consumer that dedupes by Key sees a session end once.
type Lifecycle struct {
	V    int           `json:"v"`    // SchemaVersion
	Key  string        `json:"key"`  // LifecycleKey of the event: 43 base64url characters
	Kind LifecycleKind `json:"kind"` // created, destroyed, expired or moved
	// Cluster and ID name the session: ID is HashID of its id (client.Handle), the handle
	// the table and the bus know it by; never the id itself.
	Cluster string `json:"cluster"` // 1-64 chars of [A-Za-z0-9._-]
	ID      string `json:"id"`      // 43 base64url characters
	// Principal and Group are the session's as the table held them: the user (at most
	// MaxPrincipalBytes of UTF-8; "" for none, or unknown) and the SSO group.
	Principal string `json:"principal,omitempty"`
	Group     string `json:"group,omitempty"`
	// Instance and Site are the instance whose session it was, and its site: the one that
	// created it (created), that wrote it last (destroyed, expired), that it moved away
	// from (moved). "" when the table did not tell (an older item). 0-64 chars of
	// [A-Za-z0-9._-].
	Instance string `json:"instance,omitempty"`
	Site     string `json:"site,omitempty"`
	// By and BySite are the instance that destroyed the session, or took it over, and its
	// site (destroyed, moved; required for moved). 0-64 chars of [A-Za-z0-9._-].
	By     string `json:"by,omitempty"`
	BySite string `json:"bySite,omitempty"`
	// Reason says why it ended: the destroy's (destroyed; at most 64 bytes of UTF-8, ""
	// when it gave none) or ExpiredIdle / ExpiredMaxLife (expired). None for created and
	// moved.
	Reason string `json:"reason,omitempty"`
	// At is when it happened, unix milliseconds > 0: the session's creation (created), the
	// table's write (destroyed, moved), the session's deadline (expired).
	At int64 `json:"at"`
	// Created is when the session was created, unix milliseconds; 0 when unknown.
	Created int64 `json:"created,omitempty"`
}

// LifecycleKey is the idempotency key of a lifecycle event of session id (HashID) in
// cluster: created once per session; destroyed and expired one key (a session ends once);
// moved once per write that moved it, named by that write's version (hybrid logical clock
// and writer: record.Version). It is the unpadded base64url SHA-256 of those, so that it
// has one length and reads as nothing.
func LifecycleKey(kind LifecycleKind, cluster, id, version string) string {
	what := string(kind)
	switch kind {
	case LifecycleDestroyed, LifecycleExpired:
		what, version = "ended", ""
	case LifecycleCreated:
		version = ""
	}
	sum := sha256.Sum256([]byte("sessionha lifecycle v1\x00" + what + "\x00" + cluster + "#" + id + "\x00" + version))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Validate reports whether e obeys the rules documented on Lifecycle.
func (e *Lifecycle) Validate() error { return as("lifecycle event", e.validate()) }

func (e *Lifecycle) validate() error {
	if e == nil {
		return &eventError{msg: "events: lifecycle event is nil", kind: ErrInvalid}
	}
	if e.V != SchemaVersion {
		return versionError(itoa(e.V))
	}
	if err := checkHash("key", e.Key); err != nil {
		return err
	}
	switch e.Kind {
	case LifecycleCreated, LifecycleDestroyed, LifecycleExpired, LifecycleMoved:
	default:
		return invalidf("kind", "want %q, %q, %q or %q, got %s", LifecycleCreated, LifecycleDestroyed, LifecycleExpired, LifecycleMoved, quoteShort(string(e.Kind)))
	}
	if err := firstErr(
		checkToken("cluster", e.Cluster, 1), checkHashID(e.ID), checkToken("group", e.Group, 0),
		checkToken("instance", e.Instance, 0), checkToken("site", e.Site, 0),
		checkToken("by", e.By, 0), checkToken("bySite", e.BySite, 0), positive("at", e.At),
	); err != nil {
		return err
	}
	if len(e.Principal) > MaxPrincipalBytes || !utf8.ValidString(e.Principal) {
		// Not quoted: it names a person.
		return invalidf("principal", "want at most %d bytes of valid UTF-8, got %d bytes", MaxPrincipalBytes, len(e.Principal))
	}
	if e.Created < 0 {
		return invalidf("created", "want unix milliseconds >= 0, got %d", e.Created)
	}
	switch e.Kind {
	case LifecycleExpired:
		if e.Reason != ExpiredIdle && e.Reason != ExpiredMaxLife {
			return invalidf("reason", "want %q or %q for kind %q, got %s", ExpiredIdle, ExpiredMaxLife, e.Kind, quoteShort(e.Reason))
		}
	case LifecycleDestroyed:
		if len(e.Reason) > maxReasonBytes || !utf8.ValidString(e.Reason) {
			return invalidf("reason", "want at most %d bytes of valid UTF-8, got %d bytes", maxReasonBytes, len(e.Reason))
		}
	default:
		if e.Reason != "" {
			return invalidf("reason", "only allowed for kinds %q and %q, got it for kind %q", LifecycleDestroyed, LifecycleExpired, e.Kind)
		}
	}
	if e.Kind == LifecycleMoved && e.By == "" {
		return invalidf("by", "required for kind %q: the instance the session moved to", e.Kind)
	}
	return nil
}

// EncodeLifecycle validates e and returns its JSON encoding.
func EncodeLifecycle(e *Lifecycle) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e) // small and bounded: cannot exceed MaxMessageBytes
}

// DecodeLifecycle parses and validates a lifecycle event from the lifecycle topic.
func DecodeLifecycle(b []byte) (*Lifecycle, error) {
	var e Lifecycle
	if err := decodeEnvelope(b, &e, &e.V, "lifecycle event"); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
