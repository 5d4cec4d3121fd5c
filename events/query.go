package events

import "encoding/json"

// Query asks for a session's current state over the bus (the query topic), as the old
// products' failover query did: an instance without table access publishes it, the
// sessionquery function reads the table and answers with a Reply on the reply topic.
type Query struct {
	V         int    `json:"v"`         // SchemaVersion
	Cluster   string `json:"cluster"`   // 1-64 chars of [A-Za-z0-9._-]
	ID        string `json:"id"`        // HashID of the session id
	Requester string `json:"requester"` // instance id of the asker: the reply's "requester" attribute, 1-64 chars of [A-Za-z0-9._-]
	RequestID string `json:"req"`       // echoed in the reply, 1-64 chars of [A-Za-z0-9._-]
	At        int64  `json:"at"`        // unix milliseconds when asked, > 0
}

// Validate reports whether q obeys the rules documented on Query; errors wrap
// ErrSchemaVersion or ErrInvalid and never contain the id.
func (q *Query) Validate() error { return as("query", q.validate()) }

func (q *Query) validate() error {
	if q == nil {
		return &eventError{msg: "events: query is nil", kind: ErrInvalid}
	}
	if q.V != SchemaVersion {
		return versionError(itoa(q.V))
	}
	return firstErr(
		checkToken("cluster", q.Cluster, 1),
		checkHashID(q.ID),
		checkToken("requester", q.Requester, 1),
		checkToken("req", q.RequestID, 1),
		positive("at", q.At),
	)
}

// EncodeQuery validates q and returns its JSON encoding.
func EncodeQuery(q *Query) ([]byte, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(q) // small and fixed-size: cannot exceed MaxMessageBytes
}

// DecodeQuery parses and validates a message from the query topic, with the same checks
// in the same order as DecodeSessionOp.
func DecodeQuery(b []byte) (*Query, error) {
	var q Query
	if err := decodeEnvelope(b, &q, &q.V, "query"); err != nil {
		return nil, err
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return &q, nil
}
