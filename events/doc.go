// Package events defines the messages sessionha publishes on its SNS topics
// and the Lambda consumers apply to DynamoDB.
//
// In the style of aws-lambda-go's events package, messages are plain structs
// with JSON tags, one file per message type. What this package adds is the
// contract at the edge of the bus: [EncodeSessionOp] refuses to publish a
// message a consumer would reject, and [DecodeSessionOp] accepts nothing
// that [EncodeSessionOp] could not have written, so a bad message is stopped
// by its writer and a forged or corrupt one never reaches the store.
//
// Every message carries a schema version in its "v" field. This build writes
// and reads [SchemaVersion]; fields it does not know are ignored, so a
// newer writer may add optional fields without a version bump.
//
// A session id is a bearer credential, so it never crosses the bus: messages
// carry [HashID] of it instead, and errors never quote the hashed id either.
//
// Besides what the client and the functions exchange (session ops, failover queries and
// replies, destroy and superseded notices), the lifecycle function publishes
// [Lifecycle] events for anyone to subscribe to, each with its idempotency key
// ([LifecycleKey]).
//
// Errors wrap one of four sentinels, [ErrMalformed], [ErrSchemaVersion],
// [ErrInvalid] and [ErrTooLarge], for callers to branch on with [errors.Is]:
//
//	b, err := events.EncodeSessionOp(&events.SessionOp{
//		V:       events.SchemaVersion,
//		Op:      events.OpDestroy,
//		Cluster: "default",
//		ID:      events.HashID(sessionID),
//		Version: "000193a1b2c3d4e5",
//		Writer:  "auth-a",
//		Site:    "local",
//		At:      time.Now().UnixMilli(),
//		Reason:  "logout",
//		Until:   created + maxLife, // unix ms: the tombstone outlives the session
//	})
//	...
//	op, err := events.DecodeSessionOp(b)
//	switch {
//	case errors.Is(err, events.ErrSchemaVersion):
//		// written by a newer (or older) build: keep it for a reader that knows it
//	case err != nil:
//		// malformed, invalid or too large: no build will ever apply it
//	}
package events

import "errors"

// SchemaVersion is the "v" field of every message this package writes, and
// the only one it reads.
const SchemaVersion = 1

// Limits on a message. They are well below what the transport allows (SNS
// messages up to 256 KiB, DynamoDB items up to 400 KB) so that an item stays
// cheap to write and a message always fits whatever envelope wraps it.
const (
	// MaxMessageBytes is the largest encoded message; a larger one is
	// rejected with ErrTooLarge.
	MaxMessageBytes = 128 << 10
	// MaxAttributes is the most attributes a session may carry.
	MaxAttributes = 256
	// MaxAttributeNameBytes is the longest attribute name, in bytes.
	MaxAttributeNameBytes = 128
	// MaxPrincipalBytes is the longest principal (user id), in bytes.
	MaxPrincipalBytes = 256
)

// Errors returned by this package wrap exactly one of these; the message of
// the wrapping error names the offending field.
var (
	// ErrMalformed means the message is not a JSON object, is not valid
	// UTF-8, or has a field of the wrong JSON type.
	ErrMalformed = errors.New("events: malformed message")
	// ErrSchemaVersion means the "v" field is missing or is not
	// SchemaVersion: the message may be fine for another build.
	ErrSchemaVersion = errors.New("events: unsupported schema version")
	// ErrInvalid means a field is missing, out of range, or not allowed
	// for the kind of message.
	ErrInvalid = errors.New("events: invalid message")
	// ErrTooLarge means the encoded message is over MaxMessageBytes.
	ErrTooLarge = errors.New("events: message too large")
)

// eventError carries a full message of its own while wrapping a sentinel,
// so that errors read "events: session op field ...: ..." rather than
// repeating the sentinel's text. cause, if set, is the underlying error
// (e.g. from encoding/json) for errors.As.
type eventError struct {
	msg   string
	kind  error
	cause error
}

func (e *eventError) Error() string { return e.msg }

func (e *eventError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}
