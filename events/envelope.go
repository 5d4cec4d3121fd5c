package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeEnvelope does what every Decode function does before its own validation,
// cheapest check first: ErrTooLarge if b is over MaxMessageBytes (before parsing),
// ErrMalformed if b is not a JSON object in UTF-8 or a field has the wrong JSON type,
// ErrSchemaVersion if "v" is missing or not SchemaVersion. A message that has a
// different shape but also a different "v" gets ErrSchemaVersion: it may be fine for
// another build. dst is the message, v its version field, what its name in errors.
func decodeEnvelope(b []byte, dst any, v *int, what string) error {
	if len(b) > MaxMessageBytes {
		return tooLargeMsg(what, len(b))
	}
	// encoding/json would quietly turn invalid bytes into U+FFFD, changing
	// a principal or an attribute name; RFC 8259 requires UTF-8 anyway.
	if !utf8.Valid(b) {
		return &eventError{msg: "events: malformed " + what + ": not valid UTF-8", kind: ErrMalformed}
	}
	err := json.Unmarshal(b, dst) // also rejects trailing data
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return malformedMsg(what, err)
	}
	// b is one well-formed JSON value from here on.
	if trimmed := bytes.TrimLeft(b, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		got := "nothing"
		if len(trimmed) > 0 {
			got = jsonKind(trimmed[0])
		}
		return &eventError{msg: "events: malformed " + what + ": want a JSON object, got " + got, kind: ErrMalformed}
	}
	if err != nil || *v != SchemaVersion {
		// Look at "v" alone: a type error elsewhere may just be a newer
		// schema, and "v" missing must not read as version 0.
		var probe struct {
			V json.RawMessage `json:"v"`
		}
		_ = json.Unmarshal(b, &probe) // cannot fail: b is an object and RawMessage takes any value
		if verr := checkRawVersion(probe.V, what); verr != nil {
			return verr
		}
		return malformedMsg(what, err)
	}
	return nil
}

func malformedMsg(what string, err error) error {
	return &eventError{msg: "events: malformed " + what + ": " + err.Error(), kind: ErrMalformed, cause: err}
}

func itoa(v int) string { return strconv.Itoa(v) }

// firstErr returns the first non-nil error: the checks of a message, in field order.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func positive(field string, v int64) error {
	if v <= 0 {
		return invalidf(field, "want unix milliseconds > 0, got %d", v)
	}
	return nil
}

// ErrorKind names the sentinel an error wraps, for logs, metrics and alarms:
// "too-large", "malformed", "schema-version", "invalid", or "other".
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return "too-large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrSchemaVersion):
		return "schema-version"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	}
	return "other"
}

// as names the message type in an error of the shared field checks, which say "session
// op" (the first message type), so that a bad query reads "query field ...".
func as(what string, err error) error {
	if e, ok := err.(*eventError); ok && strings.HasPrefix(e.msg, "events: session op field ") {
		return &eventError{msg: "events: " + what + " field " + strings.TrimPrefix(e.msg, "events: session op field "), kind: e.kind, cause: e.cause}
	}
	return err
}
