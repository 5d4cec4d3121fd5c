package client

import (
	"bytes"
	"maps"
	"slices"
	"sync"
	"time"
)

// NewSession describes a session to create.
type NewSession struct {
	// Principal is the user the session belongs to. Required, except by SaveAs, where ""
	// means a session of no known user, left out of the per-user index.
	Principal string
	// Group is an SSO group: sessions that share it are logged out together. Default "".
	// Only with a Principal.
	Group string
	// MaxIdle ends the session after this long without a Save. Default 30 min. Kept in
	// whole seconds, rounded down, at least 1 s.
	MaxIdle time.Duration
	// MaxLife ends the session this long after its creation. Default 8 h. Kept in whole
	// seconds, rounded down, at least 1 s.
	MaxLife time.Duration
	// Attrs are the initial attributes. Default none.
	Attrs map[string][]byte
}

// Session is one user's session. Its methods are safe for concurrent use. A Session is
// a copy: changes reach the store (and other instances) only through Store.Save.
type Session struct {
	mu         sync.Mutex
	id         string
	key        string
	principal  string
	group      string
	created    time.Time
	lastAccess time.Time
	maxIdle    time.Duration
	maxLife    time.Duration
	attrs      map[string][]byte
	// changed names the attributes set or deleted since the copy was loaded or saved,
	// each with the gen of its last change, so that a Save clears only what it took.
	changed map[string]uint64
	gen     uint64
}

// ID is the session id: the value for the cookie. It is a bearer credential: never log it.
func (s *Session) ID() string { return s.id }

// Principal is the user the session belongs to; "" for none known (SaveAs).
func (s *Session) Principal() string { return s.principal }

// Group is the session's SSO group ("" for none).
func (s *Session) Group() string { return s.group }

// Created is when the session was created.
func (s *Session) Created() time.Time { return s.created }

// LastAccess is when the session was last saved.
func (s *Session) LastAccess() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.lastAccess }

// MaxIdle and MaxLife are the session's limits.
func (s *Session) MaxIdle() time.Duration { return s.maxIdle }

// MaxLife is how long after its creation the session ends.
func (s *Session) MaxLife() time.Duration { return s.maxLife }

// ExpiresAt is when the session ends unless it is saved again: min(last access + max
// idle, created + max life).
func (s *Session) ExpiresAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiresAt()
}

func (s *Session) expiresAt() time.Time {
	idle, life := s.lastAccess.Add(s.maxIdle), s.created.Add(s.maxLife)
	if idle.Before(life) {
		return idle
	}
	return life
}

// Get returns a copy of an attribute's value.
func (s *Session) Get(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.attrs[name]
	return slices.Clone(v), ok
}

// Set sets an attribute (the value is copied). Setting the value an attribute already
// has changes nothing, so it does not make the session Modified.
func (s *Session) Set(name string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.attrs[name]; ok && bytes.Equal(old, value) {
		return
	}
	if s.attrs == nil {
		s.attrs = map[string][]byte{}
	}
	if value == nil {
		value = []byte{} // present and empty: nil would read as absent to callers of Get
	}
	s.attrs[name] = slices.Clone(value)
	s.mark(name)
}

// Delete removes an attribute.
func (s *Session) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.attrs[name]; ok {
		delete(s.attrs, name)
		s.mark(name)
	}
}

func (s *Session) mark(name string) {
	s.gen++
	if s.changed == nil {
		s.changed = map[string]uint64{}
	}
	s.changed[name] = s.gen
}

// Names lists the attribute names, sorted.
func (s *Session) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.attrs))
}

// Modified reports whether the session changed since it was loaded or saved.
func (s *Session) Modified() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.changed) > 0 }

// clone copies the session, values and pending changes included.
func (s *Session) clone() *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Session{
		id: s.id, key: s.key, principal: s.principal, group: s.group,
		created: s.created, lastAccess: s.lastAccess, maxIdle: s.maxIdle, maxLife: s.maxLife,
		attrs: cloneAttrs(s.attrs), gen: s.gen,
	}
	if len(s.changed) > 0 {
		c.changed = maps.Clone(s.changed)
	}
	return c
}

// cloneAttrs deep-copies an attribute map (never nil).
func cloneAttrs(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

// snapshot is what a Save takes from a copy: its attributes (deep-copied), the names it
// changed, and the gen to clear them up to once the store holds them.
type snapshot struct {
	attrs   map[string][]byte
	changed []string
	gen     uint64
}

func (s *Session) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshot{attrs: cloneAttrs(s.attrs), changed: slices.Sorted(maps.Keys(s.changed)), gen: s.gen}
}

// saved records that the store holds the copy's changes up to gen, and its last access.
func (s *Session) saved(gen uint64, lastAccess time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, g := range s.changed {
		if g <= gen {
			delete(s.changed, name)
		}
	}
	if lastAccess.After(s.lastAccess) {
		s.lastAccess = lastAccess
	}
}
