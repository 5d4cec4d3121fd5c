package events

import "encoding/json"

// Superseded tells one client instance that its copy of a session is no longer the
// newest: another instance wrote a newer version (a failover took the session over), an
// op of its own lost to a newer one, or the session was destroyed. The sessionop
// function publishes it on the notice topic when it merges an op whose writer differs
// from the writer of the stored item's version, since only there are both known at once;
// the message attribute "owner" names the instance told, and each instance's queue takes
// only its own (a filter policy clause). The instance stops serving its copy from memory
// and reads the table (or asks over the bus) on the next Load.
//
// It has no "site" field, so a build that reads only destroy notices (Notice) rejects it
// as invalid rather than taking it for a logout.
type Superseded struct {
	V       int    `json:"v"`       // SchemaVersion
	Cluster string `json:"cluster"` // 1-64 chars of [A-Za-z0-9._-]
	ID      string `json:"id"`      // HashID of the session id
	// Owner is the instance told: the writer of the older version. It is also the
	// message attribute "owner". 1-64 chars of [A-Za-z0-9._-].
	Owner string `json:"owner"`
	// Version and Writer are the newer version stored or being stored: the writer's
	// hybrid logical clock (16 lowercase hex digits) and its instance id.
	Version string `json:"ver"`
	Writer  string `json:"writer"`
	// Destroyed says that the session is destroyed: final, whatever the versions.
	Destroyed bool  `json:"destroyed,omitempty"`
	At        int64 `json:"at"` // unix milliseconds when the function merged the op, > 0
}

// Validate reports whether n obeys the rules documented on Superseded.
func (n *Superseded) Validate() error { return as("superseded notice", n.validate()) }

func (n *Superseded) validate() error {
	if n == nil {
		return &eventError{msg: "events: superseded notice is nil", kind: ErrInvalid}
	}
	if n.V != SchemaVersion {
		return versionError(itoa(n.V))
	}
	return firstErr(
		checkToken("cluster", n.Cluster, 1), checkHashID(n.ID), checkToken("owner", n.Owner, 1),
		checkVersion(n.Version), checkToken("writer", n.Writer, 1), positive("at", n.At),
	)
}

// EncodeSuperseded validates n and returns its JSON encoding.
func EncodeSuperseded(n *Superseded) ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(n) // small and fixed-size: cannot exceed MaxMessageBytes
}

// DecodeSuperseded parses and validates a superseded notice from the notice topic.
func DecodeSuperseded(b []byte) (*Superseded, error) {
	var n Superseded
	if err := decodeEnvelope(b, &n, &n.V, "superseded notice"); err != nil {
		return nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}
