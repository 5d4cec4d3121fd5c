package client

import (
	"fmt"
	"time"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Where the store seals and opens attribute values (the envelope is seal.go's). Memory
// holds them in clear; they are sealed when an op is encoded (deliver, for the bus and
// session files; the journal's appends and rewrites) and opened when a session comes in
// (a table read or a failover answer, a session file, the journal at Open).
//
// Every op seals every value it carries, afresh, with the keyring's sealing key: a whole
// session (scope session and modified-session, a create, a budget snapshot, what degraded
// mode sends on recovery) carries all of them, a delta (modified-attribute) only those
// set. So after a rotation a session moves to the new key at its next whole save, but
// an attribute that a modified-attribute store never sets again keeps its old key until
// the session ends: keep an old key in every instance's keyring for the longest session
// life (MaxSessionLife) after it stopped sealing.

// sealOp returns msg with its values sealed for its session: a copy, since msg may share
// an entry's attribute map; msg itself without a keyring or values.
func (s *Store) sealOp(msg *events.SessionOp) (*events.SessionOp, error) {
	k := s.cfg.Keyring
	if k == nil || k.sealWith == "" || msg == nil || msg.Session == nil || (len(msg.Session.Attrs) == 0 && len(msg.Set) == 0) {
		return msg, nil
	}
	key := record.Key(msg.Cluster, msg.ID)
	c := *msg
	var err error
	if len(msg.Session.Attrs) > 0 {
		meta := *msg.Session
		if meta.Attrs, err = k.sealAttrs(key, msg.Session.Attrs); err != nil {
			return nil, err
		}
		c.Session = &meta
	}
	if len(msg.Set) > 0 {
		if c.Set, err = k.sealAttrs(key, msg.Set); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// sealOverhead is how many bytes sealing adds to each value (0 without a keyring).
func (s *Store) sealOverhead() int {
	if s.cfg.Keyring == nil || s.cfg.Keyring.sealWith == "" {
		return 0
	}
	return SealOverhead(s.cfg.Keyring.sealWith)
}

// sessionOf is the session a stored item describes, its values opened; a value that
// does not open fails it with ErrSealed.
func (s *Store) sessionOf(it *record.Item) (*Session, error) {
	sess := fromItem(it)
	attrs, err := s.cfg.Keyring.openAttrs(it.Key, sess.attrs)
	if err != nil {
		return nil, fmt.Errorf("client: load: %w", err)
	}
	sess.attrs = attrs
	return sess, nil
}

// openJournaled opens the values of the journal's records at Open, in place. A record
// whose session is over is left as it is (replay skips it); any other that does not open
// stops Open: what it holds was acknowledged to a user and must not be dropped, so the
// keyring must have the key (keep a retired key until no journal can hold it).
func (s *Store) openJournaled(recs []journaled) error {
	now := time.Now()
	for _, r := range recs {
		op := r.op
		if op.Session == nil || len(op.Session.Attrs) == 0 || !now.Before(op.Expires()) {
			continue
		}
		attrs, err := s.cfg.Keyring.openAttrs(record.Key(op.Cluster, op.ID), op.Session.Attrs)
		if err != nil {
			return fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR): a change journaled by this instance does not open, so it cannot be sent: %w", err)
		}
		op.Session.Attrs = attrs
	}
	return nil
}
