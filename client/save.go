package client

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// The write path of a session: Create, Save and the way in for adapters (publish).

// Create makes a new session. With persistence file or ha and web-method frequency it is
// stored before Create returns; with time-based frequency, at the next flush.
func (s *Store) Create(ctx context.Context, n NewSession) (*Session, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	sess, err := s.create(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := s.enforceCap(ctx, sess.principal, sess.key); err != nil {
		s.log.Warn("could not end the user's oldest sessions beyond MaxSessionsPerPrincipal", "reason", err.Error())
	}
	return sess.clone(), nil
}

// create makes the new session n and stores it as Create does (Create and Renew).
func (s *Store) create(ctx context.Context, n NewSession) (*Session, error) {
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	sess, err := newSession(newID(), s.cfg.Cluster, n, s.cfg.MaxSessionLife, false)
	if err != nil {
		return nil, err
	}
	if err := s.storeWhole(ctx, sess, events.OpCreate); err != nil {
		return nil, err
	}
	return sess, nil
}

// newSession checks n and makes the session it describes, created now. Without a
// principal only if principalOptional (SaveAs), and then without a group.
func newSession(id, cluster string, n NewSession, maxLife time.Duration, principalOptional bool) (*Session, error) {
	switch {
	case n.Principal == "" && !principalOptional:
		return nil, fmt.Errorf("%w: Principal is required", ErrInvalid)
	case n.Principal == "" && n.Group != "":
		return nil, fmt.Errorf("%w: a Group needs a Principal (an SSO group is one user's sessions)", ErrInvalid)
	}
	if n.MaxIdle < 0 || n.MaxLife < 0 {
		return nil, fmt.Errorf("%w: MaxIdle and MaxLife must not be negative", ErrInvalid)
	}
	if n.MaxLife > maxLife {
		return nil, fmt.Errorf("%w: MaxLife %s is over the store's MaxSessionLife (%s, SESSIONHA_MAX_SESSION_LIFE)", ErrInvalid, n.MaxLife, maxLife)
	}
	if n.MaxIdle == 0 {
		n.MaxIdle = 30 * time.Minute
	}
	if n.MaxLife == 0 {
		n.MaxLife = 8 * time.Hour
	}
	now := time.Now()
	sess := &Session{
		id: id, key: record.Key(cluster, events.HashID(id)),
		principal: n.Principal, group: n.Group, created: now, lastAccess: now,
		maxIdle: seconds(n.MaxIdle), maxLife: seconds(n.MaxLife), attrs: cloneAttrs(n.Attrs),
	}
	if err := checkSession(sess.principal, sess.group, sess.attrs, 0); err != nil {
		return nil, err
	}
	return sess, nil
}

// publish stores sess whole under its id, replacing whatever this instance holds, as a
// create or a save (kind), and sends it as the configured frequency says. It is the way in
// for adapters that make their own ids (scs_support.go).
func (s *Store) publish(ctx context.Context, sess *Session, kind events.OpKind) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	sess.maxIdle, sess.maxLife = seconds(sess.maxIdle), seconds(sess.maxLife)
	if err := checkSession(sess.principal, sess.group, sess.attrs, 0); err != nil { // storeWhole checks the sealed size
		return err
	}
	return s.storeWhole(ctx, sess, kind)
}

// storeWhole makes sess (a copy is kept) this instance's session and persists it whole.
func (s *Store) storeWhole(ctx context.Context, sess *Session, kind events.OpKind) error {
	if n := s.sealOverhead(); n > 0 {
		if err := checkSession(sess.principal, sess.group, sess.attrs, n); err != nil { // sealed values are larger
			return err
		}
	}
	own := sess.clone()
	own.id, own.changed = "", nil // the cache never holds the id in clear
	s.mu.Lock()
	if s.revokedLocked(own.key, time.Now()) {
		s.mu.Unlock()
		return ErrNotFound
	}
	e := s.cache.get(own.key)
	if e == nil {
		e = &entry{key: own.key}
	}
	e.sess = own
	var (
		op   *outOp
		keep []jrec
	)
	if s.bus != nil || s.files != nil {
		e.seq++
		if kind == events.OpCreate {
			e.create = true
		}
		e.full = e.seq
		op = s.sendNowLocked(e, false)
		keep = s.keepIfDegradedLocked(e)
	}
	s.cache.add(e) // pinned by now if it has something to send, so never evicted unsent
	s.mu.Unlock()
	var err error
	switch {
	case keep != nil:
		err = s.keep(keep...)
		if err == nil && s.cfg.SaveWait == SaveApplied {
			err = errNotApplied
		}
	case op != nil:
		err = s.sendNow(ctx, op)
		if err == nil && s.cfg.SaveWait == SaveApplied {
			err = s.waitApplied(ctx, own.key, op.ver)
		}
	}
	if err != nil && kind == events.OpCreate {
		// The caller never learns the id, so nobody could use the session (one that is
		// sent, or journaled, is stored and expires unused).
		s.mu.Lock()
		s.cache.drop(own.key)
		s.mu.Unlock()
	}
	return err
}

// Save stores the session's changes as the configured scope and frequency say:
//
//   - scope session sends the whole session every time; modified-session sends it whole
//     only if it changed or its stored last access is over MaxIdle/2 old; modified-attribute
//     sends only the attributes set or deleted on this copy (others' changes to other
//     attributes are kept), or just the last access under the same rule;
//   - web-method frequency returns once the change is published (ha) or written (file);
//     time-based returns at once, and the change goes with the next flush, together with
//     every other change to the session since the last one; but with ha, a change that
//     the next flush would send after the session's deadline (the table takes nothing of
//     a session once its deadline has passed) is published before Save returns;
//   - modified-attribute sends the whole session instead of a delta once the deltas of
//     this instance since its last whole session would leave too many attribute
//     registers in the table (see registerBudget in send.go).
//
// In degraded mode Save returns nil once the change is held in memory and journaled to
// local disk (JournalDir): it is sent when the bus is back, by this process or, after a
// crash, by the next Open of this instance (see Mode). If ctx ends while publishing, the
// error wraps ctx's and the change is still sent later. An expired or destroyed session
// fails with ErrNotFound.
//
// With SaveWait applied (or SaveApplied), Save returns once the change is in the table.
func (s *Store) Save(ctx context.Context, sess *Session) error {
	return s.save(ctx, sess, s.cfg.SaveWait == SaveApplied)
}

// SaveApplied is Save that returns once the change is in the table, whatever SaveWait
// says, so that another instance that takes the session over right after (a failover)
// reads it: it reads the table (ReadPath direct) or asks over the bus (bus) until the
// stored version is the change's or newer, for at most MaxWait, then fails with an error
// wrapping ErrTimeout (the change is published, and is applied later). With time-based
// frequency it sends the session's pending changes at once. With nothing to send it
// waits for this instance's last change to the session. While the store is degraded the
// change is journaled as Save does, and SaveApplied fails with ErrUnavailable: it cannot
// be applied before the bus is back. A session destroyed meanwhile fails with ErrNotFound.
func (s *Store) SaveApplied(ctx context.Context, sess *Session) error {
	return s.save(ctx, sess, true)
}

func (s *Store) save(ctx context.Context, sess *Session, wait bool) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	if sess == nil || !validID(sess.id) || sess.key != record.Key(s.cfg.Cluster, events.HashID(sess.id)) {
		return fmt.Errorf("%w: not a session of this store", ErrInvalid)
	}
	now := time.Now()
	s.mu.Lock()
	// Snapshots are taken in the order changes are recorded and ops built, so that of
	// two Saves of one copy racing, the one recorded last carries the latest state.
	snap := sess.snapshot()
	if s.revokedLocked(sess.key, now) {
		s.mu.Unlock()
		return ErrNotFound
	}
	e := s.cache.get(sess.key)
	fresh := e == nil
	if fresh {
		// Evicted, or never held here: the copy is all this instance knows.
		own := sess.clone()
		own.id, own.changed, own.attrs = "", nil, snap.attrs
		e = &entry{key: sess.key, sess: own}
	}
	if !now.Before(e.sess.expiresAt()) {
		if !fresh && !e.pinned() {
			s.cache.drop(e.key)
		}
		s.mu.Unlock()
		return ErrNotFound
	}
	due := now.Sub(e.sess.lastAccess) >= e.sess.maxIdle/2
	var (
		attrs   map[string][]byte // the new attributes; nil: unchanged
		changed bool              // something to record
	)
	switch s.cfg.Scope {
	case ScopeSession:
		attrs, changed = snap.attrs, true
	case ScopeModifiedSession:
		if len(snap.changed) > 0 || due {
			attrs, changed = snap.attrs, true
		}
	case ScopeModifiedAttribute:
		if len(snap.changed) > 0 {
			attrs = cloneAttrs(e.sess.attrs)
			for _, name := range snap.changed {
				if v, ok := snap.attrs[name]; ok {
					attrs[name] = v
				} else {
					delete(attrs, name)
				}
			}
		}
		changed = len(snap.changed) > 0 || due
	}
	if !changed {
		var op *outOp
		if wait && !fresh && s.bus != nil && e.unsent() && s.Mode() == ModeFailover {
			op = s.buildLocked(e, false) // time-based changes still held: this call sends them
			s.cache.settle(e)
		}
		last := e.ver // this instance's last change, if it was the last writer
		s.mu.Unlock()
		if op != nil {
			if err := s.sendNow(ctx, op); err != nil {
				return err
			}
		}
		if wait && s.table != nil && !fresh && last != "" && writerOf(last) == s.cfg.InstanceID {
			return s.waitApplied(ctx, sess.key, last)
		}
		return nil
	}
	if attrs != nil {
		if err := checkSession(e.sess.principal, e.sess.group, attrs, s.sealOverhead()); err != nil {
			s.mu.Unlock()
			return err
		}
		e.sess.attrs = attrs
	}
	// The table takes no op of a session once its deadline has passed, even one made
	// before: a time-based change that the next flush would send too late goes at once.
	urgent := s.bus != nil && e.sess.expiresAt().Sub(now) < s.cfg.FlushInterval+s.cfg.PublishTimeout
	e.sess.lastAccess = now
	if now.Before(e.sess.created) {
		e.sess.lastAccess = e.sess.created // created by another instance, whose clock is ahead
	}
	var (
		op   *outOp
		keep []jrec
	)
	if s.bus != nil || s.files != nil {
		e.seq++
		switch {
		case s.cfg.Scope != ScopeModifiedAttribute || s.Mode() == ModeDegraded:
			// Degraded: recovery sends whole sessions, whatever the scope, so that
			// what changed meanwhile is complete in the table once it is back.
			e.full = e.seq
		case len(snap.changed) == 0:
			e.touch = e.seq
		default:
			if e.changed == nil {
				e.changed = map[string]uint64{}
			}
			for _, name := range snap.changed {
				e.changed[name] = e.seq
			}
		}
		op = s.sendNowLocked(e, urgent)
		if op == nil && wait && s.bus != nil && s.Mode() == ModeFailover {
			op = s.buildLocked(e, false) // time-based: this call sends the session now
		}
		keep = s.keepIfDegradedLocked(e)
	}
	s.cache.add(e)
	s.mu.Unlock()
	sess.saved(snap.gen, now)
	switch {
	case keep != nil:
		if err := s.keep(keep...); err != nil || !wait {
			return err
		}
		return errNotApplied
	case op != nil:
		if err := s.sendNow(ctx, op); err != nil || !wait || s.files != nil {
			return err
		}
		return s.waitApplied(ctx, sess.key, op.ver)
	}
	return nil
}

// checkSession checks what the wire would refuse, so that a change is refused when it is
// made, not when a later flush cannot send it. overhead is what sealing adds to each
// value (seal.go; 0 without a keyring).
func checkSession(principal, group string, attrs map[string][]byte, overhead int) error {
	if len(attrs) > events.MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d allowed", ErrInvalid, len(attrs), events.MaxAttributes)
	}
	// An upper bound of the encoded size: JSON may escape a byte of text into six, and
	// base64 makes four bytes of three. Only a session that might be too large is encoded
	// whole to measure it; otherwise only its small fields are, to check them.
	bound := 1024 + 6*(len(principal)+len(group))
	for name, v := range attrs {
		if name == "" || len(name) > events.MaxAttributeNameBytes || !utf8.ValidString(name) {
			return fmt.Errorf("%w: attribute name %.40q: want 1-%d bytes of UTF-8", ErrInvalid, name, events.MaxAttributeNameBytes)
		}
		bound += 6*len(name) + 4*(len(v)+overhead+2)/3 + 8
	}
	var measured map[string][]byte
	if bound > events.MaxMessageBytes {
		measured = attrs
		if overhead > 0 { // as large as sealed: base64 makes as many bytes of any bytes
			measured = make(map[string][]byte, len(attrs))
			for name, v := range attrs {
				measured[name] = make([]byte, len(v)+overhead)
			}
		}
	}
	_, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpSave, Cluster: "c", ID: events.HashID(""), Version: "0000000000000001",
		Writer: "w", Site: "s", At: 1, Session: &events.Session{
			Principal: principal, Group: group, Created: 1, LastAccess: 1, MaxIdle: 1, MaxLife: 1, Attrs: measured,
		},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}
