package events

import "unicode/utf8"

// Session is the state of a session as a writer saw it: whole in a create or
// save, and only its metadata (no Attrs) in a delta, whose changes are the op's
// Set and Remove.
type Session struct {
	Principal  string            `json:"principal"`       // user id, at most MaxPrincipalBytes bytes of valid UTF-8; "" for none known (then no Group)
	Group      string            `json:"group,omitempty"` // SSO group, optional: at most 64 chars of [A-Za-z0-9._-]
	Created    int64             `json:"created"`         // unix milliseconds, > 0
	LastAccess int64             `json:"lastAccess"`      // unix milliseconds, >= Created
	MaxIdle    int64             `json:"maxIdle"`         // seconds, > 0
	MaxLife    int64             `json:"maxLife"`         // seconds, > 0
	Attrs      map[string][]byte `json:"attrs,omitempty"` // at most MaxAttributes; names 1..MaxAttributeNameBytes bytes of valid UTF-8; values base64 in JSON
}

// validate checks s as the session of a create or save op. The principal
// is not quoted in errors: it identifies a person.
//
// A session may have no principal (""): one of an app that knows no user, such as an
// scs app; the per-user index leaves it out. This widens schema version 1 (every message
// valid before still is), so the functions must have it before clients send such a
// session.
func (s *Session) validate() error {
	if len(s.Principal) > MaxPrincipalBytes || !utf8.ValidString(s.Principal) {
		return invalidf("session.principal", "want at most %d bytes of valid UTF-8, got %d bytes", MaxPrincipalBytes, len(s.Principal))
	}
	if err := checkToken("session.group", s.Group, 0); err != nil {
		return err
	}
	if s.Principal == "" && s.Group != "" {
		// An SSO group is a user's sessions: its logout finds them by principal.
		return invalidf("session.principal", "required with a group, got none")
	}
	if s.Created <= 0 {
		return invalidf("session.created", "want unix milliseconds > 0, got %d", s.Created)
	}
	if s.LastAccess < s.Created {
		return invalidf("session.lastAccess", "want >= created (%d), got %d", s.Created, s.LastAccess)
	}
	if s.MaxIdle <= 0 {
		return invalidf("session.maxIdle", "want seconds > 0, got %d", s.MaxIdle)
	}
	if s.MaxLife <= 0 {
		return invalidf("session.maxLife", "want seconds > 0, got %d", s.MaxLife)
	}
	if len(s.Attrs) > MaxAttributes {
		return invalidf("session.attrs", "want at most %d attributes, got %d", MaxAttributes, len(s.Attrs))
	}
	if bad, ok := leastBadName(s.Attrs); ok {
		return invalidf("session.attrs", "attribute name %s: want 1-%d bytes of valid UTF-8, got %d bytes", quoteShort(bad), MaxAttributeNameBytes, len(bad))
	}
	return nil
}

func validAttrName(name string) bool {
	return len(name) > 0 && len(name) <= MaxAttributeNameBytes && utf8.ValidString(name)
}

// leastBadName reports the least invalid attribute name of m, so that an error does not
// depend on map iteration order.
func leastBadName(m map[string][]byte) (bad string, found bool) {
	for name := range m {
		if !validAttrName(name) && (!found || name < bad) {
			bad, found = name, true
		}
	}
	return bad, found
}
