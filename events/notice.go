package events

import (
	"encoding/json"
	"unicode/utf8"
)

// Notice announces a destroyed session on the notice topic, as OpenAM's logout
// broadcast did: every instance drops its copy and refuses the id at once, without
// waiting for the table. It is published with the message attribute "site" (the origin
// site), so that a subscription can take its own site's notices only (scope "site") or
// every site's (scope "all").
type Notice struct {
	V       int    `json:"v"`                // SchemaVersion
	Cluster string `json:"cluster"`          // 1-64 chars of [A-Za-z0-9._-]
	ID      string `json:"id"`               // HashID of the destroyed session's id
	Site    string `json:"site"`             // origin site, 1-64 chars of [A-Za-z0-9._-]
	Writer  string `json:"writer"`           // instance that destroyed it, 1-64 chars of [A-Za-z0-9._-]
	At      int64  `json:"at"`               // unix milliseconds of the destroy, > 0
	Reason  string `json:"reason,omitempty"` // optional, at most 64 bytes of UTF-8
}

// Validate reports whether n obeys the rules documented on Notice.
func (n *Notice) Validate() error { return as("notice", n.validate()) }

func (n *Notice) validate() error {
	if n == nil {
		return &eventError{msg: "events: notice is nil", kind: ErrInvalid}
	}
	if n.V != SchemaVersion {
		return versionError(itoa(n.V))
	}
	if err := firstErr(
		checkToken("cluster", n.Cluster, 1), checkHashID(n.ID), checkToken("site", n.Site, 1),
		checkToken("writer", n.Writer, 1), positive("at", n.At),
	); err != nil {
		return err
	}
	if len(n.Reason) > maxReasonBytes || !utf8.ValidString(n.Reason) {
		return invalidf("reason", "want at most %d bytes of valid UTF-8, got %d bytes", maxReasonBytes, len(n.Reason))
	}
	return nil
}

// EncodeNotice validates n and returns its JSON encoding.
func EncodeNotice(n *Notice) ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(n)
}

// DecodeNotice parses and validates a message from the notice topic.
func DecodeNotice(b []byte) (*Notice, error) {
	var n Notice
	if err := decodeEnvelope(b, &n, &n.V, "notice"); err != nil {
		return nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}
