package events

import "encoding/json"

// ReplyStatus is what a Reply found.
type ReplyStatus string

// The statuses of a Reply.
const (
	ReplyFound     ReplyStatus = "found"     // Session holds the session
	ReplyMissing   ReplyStatus = "missing"   // no such session, or expired: the same to a reader
	ReplyDestroyed ReplyStatus = "destroyed" // logged out: the asker may refuse it at once
)

// Reply answers a Query on the reply topic, published with the message attribute
// "requester" set to Query.Requester so that each instance's queue receives only its own
// replies (a subscription filter policy).
type Reply struct {
	V         int         `json:"v"`                 // SchemaVersion
	RequestID string      `json:"req"`               // the Query's
	Requester string      `json:"requester"`         // the Query's
	Status    ReplyStatus `json:"status"`            // found, missing or destroyed
	Version   string      `json:"ver,omitempty"`     // found: the stored version (hybrid logical clock, 16 hex digits)
	Session   *Session    `json:"session,omitempty"` // found: the whole session, as in a save
}

// Validate reports whether r obeys the rules documented on Reply.
func (r *Reply) Validate() error { return as("reply", r.validate()) }

func (r *Reply) validate() error {
	if r == nil {
		return &eventError{msg: "events: reply is nil", kind: ErrInvalid}
	}
	if r.V != SchemaVersion {
		return versionError(itoa(r.V))
	}
	if err := firstErr(checkToken("req", r.RequestID, 1), checkToken("requester", r.Requester, 1)); err != nil {
		return err
	}
	switch r.Status {
	case ReplyFound:
		if r.Session == nil {
			return invalidf("session", "required for status %q", r.Status)
		}
		if err := checkVersion(r.Version); err != nil {
			return err
		}
		return r.Session.validate()
	case ReplyMissing, ReplyDestroyed:
		if r.Session != nil || r.Version != "" {
			return invalidf("session", "must be absent for status %q", r.Status)
		}
		return nil
	}
	return invalidf("status", "want %q, %q or %q, got %s", ReplyFound, ReplyMissing, ReplyDestroyed, quoteShort(string(r.Status)))
}

// EncodeReply validates r and returns its JSON encoding (ErrTooLarge over MaxMessageBytes).
func EncodeReply(r *Reply) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, &eventError{msg: "events: encoding reply: " + err.Error(), kind: ErrInvalid, cause: err}
	}
	if len(b) > MaxMessageBytes {
		return nil, tooLargeMsg("reply", len(b))
	}
	return b, nil
}

// DecodeReply parses and validates a message from the reply topic.
func DecodeReply(b []byte) (*Reply, error) {
	var r Reply
	if err := decodeEnvelope(b, &r, &r.V, "reply"); err != nil {
		return nil, err
	}
	if r.Session != nil {
		r.Session.Attrs = normalizeValues(r.Session.Attrs)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
