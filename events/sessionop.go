package events

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// OpKind says what a SessionOp does to its session.
type OpKind string

// The kinds of SessionOp.
const (
	OpCreate  OpKind = "create"  // a new session, whole
	OpSave    OpKind = "save"    // the whole session after a change (scope "session")
	OpDestroy OpKind = "destroy" // logout: final
	// OpDelta changes some attributes only (scope "modified-attribute"): Set and Remove,
	// with the session's metadata (Session without Attrs) so that expiry is known even
	// when the delta arrives before the session's create. A delta with neither Set nor
	// Remove is a touch: it only moves LastAccess.
	OpDelta OpKind = "delta"
)

// Limits on SessionOp fields that callers do not usually need by name.
const (
	maxTokenChars  = 64 // cluster, writer, site, group
	maxReasonBytes = 64
	hashIDChars    = 43 // base64url without padding of 32 bytes
	versionDigits  = 16
)

// SessionOp is one change to one session, published on the ops topic.
//
// Ops on one session are ordered by Version, a hybrid logical clock, not by
// At or by arrival: SNS may deliver them late, twice, or out of order.
type SessionOp struct {
	V       int      `json:"v"`                 // SchemaVersion
	Op      OpKind   `json:"op"`                // OpCreate, OpSave or OpDestroy
	Cluster string   `json:"cluster"`           // Sun ONE cluster-id: 1-64 chars of [A-Za-z0-9._-]
	ID      string   `json:"id"`                // HashID of the session id: 43 base64url characters
	Version string   `json:"ver"`               // hybrid logical clock of the writer: 16 lowercase hex digits, not all zero
	Writer  string   `json:"writer"`            // instance id of the writer: 1-64 chars of [A-Za-z0-9._-]
	Site    string   `json:"site"`              // site the writer belongs to: 1-64 chars of [A-Za-z0-9._-]
	At      int64    `json:"at"`                // unix milliseconds when the writer made the op, > 0
	Session *Session `json:"session,omitempty"` // required for create and save; must be absent for destroy
	Reason  string   `json:"reason,omitempty"`  // destroy only, optional: why (e.g. "logout"), at most 64 bytes of UTF-8
	// Until is a destroy's latest possible deadline of its session, unix milliseconds
	// (destroy only, optional; 0 or absent: unknown): the writer's created + maxLife of
	// the session, or, when it knows nothing of it, now plus the longest life a session
	// may have. The store keeps the tombstone until then (and at least its grace), so
	// that no op of the session, however late it comes, finds it gone. Writers older than
	// this field send none: their tombstones are kept for the grace only.
	Until int64 `json:"until,omitempty"`
	// Set and Remove are a delta's changes (delta only): names valid as attribute names,
	// at most MaxAttributes of them in all, no name in both, no name twice in Remove.
	Set    map[string][]byte `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// HashID returns the form of a session id that may leave the client: the
// unpadded base64url encoding of its SHA-256. A session id is a bearer
// credential; its hash is enough to address the session in the store and
// useless for logging in.
func HashID(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Validate reports whether op obeys every rule documented on SessionOp and
// Session. The error wraps ErrSchemaVersion or ErrInvalid and names the
// first offending field. It never contains the value of ID.
func (op *SessionOp) Validate() error {
	if op == nil {
		return &eventError{msg: "events: session op is nil", kind: ErrInvalid}
	}
	if op.V != SchemaVersion {
		return versionError(strconv.Itoa(op.V))
	}
	switch op.Op {
	case OpCreate, OpSave, OpDestroy, OpDelta:
	default:
		return invalidf("op", "want %q, %q, %q or %q, got %s", OpCreate, OpSave, OpDelta, OpDestroy, quoteShort(string(op.Op)))
	}
	if err := checkToken("cluster", op.Cluster, 1); err != nil {
		return err
	}
	if err := checkHashID(op.ID); err != nil {
		return err
	}
	if err := checkVersion(op.Version); err != nil {
		return err
	}
	if err := checkToken("writer", op.Writer, 1); err != nil {
		return err
	}
	if err := checkToken("site", op.Site, 1); err != nil {
		return err
	}
	if op.At <= 0 {
		return invalidf("at", "want unix milliseconds > 0, got %d", op.At)
	}
	if op.Op != OpDelta && (op.Set != nil || op.Remove != nil) {
		return invalidf("set", "set and remove are only allowed for op %q, got them for op %q", OpDelta, op.Op)
	}
	if op.Until < 0 || op.Until != 0 && op.Op != OpDestroy {
		return invalidf("until", "want unix milliseconds >= 0, for op %q only; got %d for op %q", OpDestroy, op.Until, op.Op)
	}
	if op.Op == OpDestroy {
		if op.Session != nil {
			return invalidf("session", "must be absent for op %q", op.Op)
		}
		if len(op.Reason) > maxReasonBytes || !utf8.ValidString(op.Reason) {
			return invalidf("reason", "want at most %d bytes of valid UTF-8, got %d bytes", maxReasonBytes, len(op.Reason))
		}
		return nil
	}
	if op.Session == nil {
		return invalidf("session", "required for op %q", op.Op)
	}
	if op.Reason != "" {
		return invalidf("reason", "only allowed for op %q, got it for op %q", OpDestroy, op.Op)
	}
	if op.Op == OpDelta {
		if op.Session.Attrs != nil {
			return invalidf("session.attrs", "must be absent for op %q (its changes are in set and remove)", OpDelta)
		}
		if err := op.checkDelta(); err != nil {
			return err
		}
	}
	return op.Session.validate()
}

// checkDelta checks Set and Remove.
func (op *SessionOp) checkDelta() error {
	if n := len(op.Set) + len(op.Remove); n > MaxAttributes {
		return invalidf("set", "want at most %d changed attributes, got %d", MaxAttributes, n)
	}
	if bad, ok := leastBadName(op.Set); ok {
		return invalidf("set", "attribute name %s: want 1-%d bytes of valid UTF-8, got %d bytes", quoteShort(bad), MaxAttributeNameBytes, len(bad))
	}
	seen := make(map[string]bool, len(op.Remove))
	for _, name := range op.Remove {
		if !validAttrName(name) {
			return invalidf("remove", "attribute name %s: want 1-%d bytes of valid UTF-8, got %d bytes", quoteShort(name), MaxAttributeNameBytes, len(name))
		}
		if _, both := op.Set[name]; both || seen[name] {
			return invalidf("remove", "attribute name %s listed twice (in set or remove)", quoteShort(name))
		}
		seen[name] = true
	}
	return nil
}

// Expires returns when the session of a create or save op expires, given
// that op is valid: the earlier of LastAccess+MaxIdle and Created+MaxLife.
// It returns the zero Time for a destroy, which has no session.
func (op *SessionOp) Expires() time.Time {
	if op == nil || op.Op == OpDestroy || op.Session == nil {
		return time.Time{}
	}
	s := op.Session
	return time.UnixMilli(min(addSeconds(s.LastAccess, s.MaxIdle), addSeconds(s.Created, s.MaxLife)))
}

// addSeconds adds sec seconds to ms milliseconds, saturating rather than
// overflowing, so that a huge MaxIdle means "never" instead of "long ago".
func addSeconds(ms, sec int64) int64 {
	if ms >= 0 && sec >= 0 && sec > (math.MaxInt64-ms)/1000 {
		return math.MaxInt64
	}
	return ms + sec*1000
}

// EncodeSessionOp validates op and returns its JSON encoding. It fails with
// an error wrapping ErrSchemaVersion or ErrInvalid if op is not valid (so
// set V to SchemaVersion), and ErrTooLarge if the encoding is over
// MaxMessageBytes. Nil attribute values are written as empty ones.
func EncodeSessionOp(op *SessionOp) ([]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	return encode(op)
}

// encode marshals a valid op and checks its size.
func encode(op *SessionOp) ([]byte, error) {
	b, err := json.Marshal(withoutNilValues(op))
	if err != nil {
		// Not reachable for a valid op; kept so that a future field type
		// that can fail to marshal does not go unnoticed.
		return nil, &eventError{msg: "events: encoding session op: " + err.Error(), kind: ErrInvalid, cause: err}
	}
	if len(b) > MaxMessageBytes {
		return nil, tooLarge(len(b))
	}
	return b, nil
}

// withoutNilValues returns op, or a copy of it whose attribute values are
// []byte{} where op's are nil, so that the wire never holds null for an
// attribute value: one spelling per value keeps encodings stable.
func withoutNilValues(op *SessionOp) *SessionOp {
	var attrs map[string][]byte
	if op.Session != nil {
		attrs = op.Session.Attrs
	}
	if !hasNil(attrs) && !hasNil(op.Set) {
		return op
	}
	c := *op
	if hasNil(attrs) {
		s := *op.Session
		s.Attrs = emptyForNil(attrs)
		c.Session = &s
	}
	c.Set = emptyForNil(op.Set)
	return &c
}

func hasNil(m map[string][]byte) bool {
	for _, v := range m {
		if v == nil {
			return true
		}
	}
	return false
}

// emptyForNil copies m with nil values made empty (nil stays nil).
func emptyForNil(m map[string][]byte) map[string][]byte {
	if m == nil {
		return nil
	}
	c := make(map[string][]byte, len(m))
	for name, v := range m {
		if v == nil {
			v = []byte{}
		}
		c[name] = v
	}
	return c
}

// DecodeSessionOp parses and validates a message from the ops topic.
//
// Checks run cheapest first, and the error wraps the sentinel of the first
// that fails: ErrTooLarge if b is over MaxMessageBytes (before parsing),
// ErrMalformed if b is not a JSON object in UTF-8 or a field has the wrong
// JSON type, ErrSchemaVersion if "v" is missing or not SchemaVersion, and
// ErrInvalid from Validate. A message that has a different shape but also
// a different "v" gets ErrSchemaVersion: it may be fine for another build.
//
// Fields this build does not know are ignored. Field names match as in
// encoding/json (case-insensitively, the last duplicate winning).
//
// The result is normalized so that encoding it again is stable: an empty
// Attrs map is nil and a null attribute value is []byte{}.
func DecodeSessionOp(b []byte) (*SessionOp, error) {
	var op SessionOp
	if err := decodeEnvelope(b, &op, &op.V, "session op"); err != nil {
		return nil, err
	}
	if s := op.Session; s != nil {
		s.Attrs = normalizeValues(s.Attrs)
	}
	op.Set = normalizeValues(op.Set)
	if len(op.Remove) == 0 {
		op.Remove = nil
	}
	if err := op.Validate(); err != nil {
		return nil, err
	}
	if err := checkEncodedSize(len(b), &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// normalizeValues makes an empty map nil and a null value empty, so that re-encoding is stable.
func normalizeValues(m map[string][]byte) map[string][]byte {
	if len(m) == 0 {
		return nil
	}
	for name, v := range m {
		if v == nil {
			m[name] = []byte{}
		}
	}
	return m
}

// checkEncodedSize makes sure that op, decoded from n bytes, still fits in
// MaxMessageBytes when encoded, so that whatever Decode accepts Encode
// accepts too. Re-encoding can grow free-text strings (json.Marshal writes
// '<' as \u003c), never anything else, and no string byte grows past six
// bytes; only a message that could then overflow is actually re-encoded.
func checkEncodedSize(n int, op *SessionOp) error {
	return checkGrowth(n, op.textBytes(), func() error { _, err := encode(op); return err })
}

// textBytes counts the bytes of free-text strings, the only ones re-encoding can grow.
func (op *SessionOp) textBytes() int {
	text := len(op.Reason)
	if s := op.Session; s != nil {
		text += len(s.Principal) + len(s.Group)
		for name := range s.Attrs {
			text += len(name)
		}
	}
	for name := range op.Set {
		text += len(name)
	}
	for _, name := range op.Remove {
		text += len(name)
	}
	return text
}

// checkGrowth re-encodes (reencode) a message decoded from n bytes only if its text could
// have grown past MaxMessageBytes: no string byte grows past six bytes.
func checkGrowth(n, text int, reencode func() error) error {
	if n+6*text <= MaxMessageBytes {
		return nil
	}
	return reencode()
}

// checkRawVersion checks the raw JSON of the "v" field.
func checkRawVersion(raw json.RawMessage, what string) error {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return &eventError{msg: fmt.Sprintf(`events: schema version missing (field "v"; this build reads %d)`, SchemaVersion), kind: ErrSchemaVersion}
	case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
		if string(raw) == strconv.Itoa(SchemaVersion) {
			return nil
		}
		return versionError(truncate(string(raw), 24))
	default:
		return &eventError{msg: "events: malformed " + what + `: field "v": want a number, got ` + jsonKind(raw[0]), kind: ErrMalformed}
	}
}

func versionError(v string) error {
	return &eventError{msg: fmt.Sprintf("events: schema version %s not supported (this build reads %d)", v, SchemaVersion), kind: ErrSchemaVersion}
}

func tooLarge(n int) error { return tooLargeMsg("session op", n) }

func tooLargeMsg(what string, n int) error {
	return &eventError{msg: fmt.Sprintf("events: %s is %d bytes encoded, over MaxMessageBytes (%d)", what, n, MaxMessageBytes), kind: ErrTooLarge}
}

// invalidf returns an ErrInvalid naming field. Callers must not pass the
// value of the id field as an argument.
func invalidf(field, format string, args ...any) error {
	return &eventError{
		msg:  "events: session op field " + strconv.Quote(field) + ": " + fmt.Sprintf(format, args...),
		kind: ErrInvalid,
	}
}

// checkHashID checks that id looks like HashID's output. Its messages give
// lengths only: an id is as good as a session id for finding a session in
// the store, so it stays out of logs.
func checkHashID(id string) error { return checkHash("id", id) }

// checkHash checks that field holds a base64url SHA-256, as HashID makes them.
func checkHash(field, id string) error {
	const want = "want 43 base64url characters encoding a 32-byte SHA-256"
	if n := utf8.RuneCountInString(id); n != hashIDChars {
		return invalidf(field, "%s, got %d characters", want, n)
	}
	// Re-encoding catches what decoding alone lets through: non-zero
	// trailing bits (two spellings of one hash) and ignored '\r' or '\n'.
	sum, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(sum) != sha256.Size || base64.RawURLEncoding.EncodeToString(sum) != id {
		return invalidf(field, "%s, got 43 characters that are not canonical base64url", want)
	}
	return nil
}

// checkVersion checks a hybrid logical clock reading.
func checkVersion(v string) error {
	if len(v) != versionDigits {
		return invalidf("ver", "want %d lowercase hex digits, got %s", versionDigits, quoteShort(v))
	}
	zero := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
			zero = false
		default:
			return invalidf("ver", "want %d lowercase hex digits, got %s", versionDigits, quoteShort(v))
		}
	}
	if zero {
		// The zero clock is what an uninitialized writer would send.
		return invalidf("ver", "must not be all zero")
	}
	return nil
}

// checkToken checks an identifier-like field: minLen to 64 characters of
// [A-Za-z0-9._-], which is safe in keys, logs and metric dimensions.
func checkToken(field, s string, minLen int) error {
	ok := minLen <= len(s) && len(s) <= maxTokenChars
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return invalidf(field, "want %d-%d characters of [A-Za-z0-9._-], got %s", minLen, maxTokenChars, quoteShort(s))
	}
	return nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(truncate(s, max)) + fmt.Sprintf(" (%d bytes)", len(s))
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence,
// marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// jsonKind names the kind of JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
