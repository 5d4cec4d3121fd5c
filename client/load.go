package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// The read path: Load, from this instance's memory, the table or the bus.

// Load returns the session with the given id. With persistence ha, a session this
// instance owns (Reads owner: it wrote the newest version it knows of, and no superseded
// notice says otherwise) is served from memory with no AWS call; any other is the newer
// of this instance's copy (so an instance reads its own writes before they are applied)
// and the table's strongly consistent one (or the answer over the bus); if the table
// cannot be read, this instance's copy if it has one. It fails with ErrNotFound for an id
// that is unknown, expired or destroyed. The table's read takes the session item and its
// logout item in one call (two read units): a logout item ends the session whatever the
// session item says, which another region's save may have overwritten (last writer wins).
func (s *Store) Load(ctx context.Context, id string) (*Session, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.reads.Add(1)
	if !validID(id) {
		return nil, ErrNotFound
	}
	hashed := events.HashID(id)
	key := record.Key(s.cfg.Cluster, hashed)
	now := time.Now()
	s.mu.Lock()
	if s.revokedLocked(key, now) {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	var (
		mine    *Session
		ver     string
		pending bool
		owned   bool
	)
	if e := s.cache.use(key); e != nil {
		mine, ver, pending, owned = e.sess.share(), e.ver, e.pinned(), e.owned
		if !now.Before(mine.expiresAt()) {
			if !pending {
				s.cache.drop(key)
			}
			mine = nil
		}
	}
	s.mu.Unlock()
	if mine != nil {
		s.stats.cacheHits.Add(1)
		mine.id = id
		if owned && s.ownerReads() {
			s.stats.ownedLoads.Add(1)
			return mine, nil // the owner's copy is the newest: no AWS call
		}
	}
	switch {
	case s.table != nil && s.cfg.ReadPath == ReadBus:
		return s.loadBus(ctx, id, key, hashed, mine, ver, pending, now)
	case s.table != nil:
		return s.loadTable(ctx, id, key, mine, ver, pending, now)
	case s.files != nil && mine == nil:
		return s.loadFile(id, hashed, key, now)
	case mine == nil:
		return nil, ErrNotFound
	}
	return mine, nil
}

// loadTable reads the table (the session as record.Table.Get sees it: its logout item
// final) and returns the newer copy.
func (s *Store) loadTable(ctx context.Context, id, key string, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	it, err := s.table.Get(ctx, key)
	switch {
	case errors.Is(err, record.ErrCorrupt):
		return nil, fmt.Errorf("client: load: %w", err)
	case err != nil && mine != nil && ctx.Err() == nil:
		return mine, nil // the table is out of reach: keep serving what this instance has
	case err != nil:
		return nil, fmt.Errorf("%w: read session: %v", ErrUnavailable, err)
	}
	return s.resolve(id, key, it, mine, ver, pending, now)
}

// loadBus asks over the bus and returns the newer copy. Without an answer within MaxWait
// it serves this instance's copy if it has one, else fails with ErrTimeout.
func (s *Store) loadBus(ctx context.Context, id, key, hashed string, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	if pending && mine != nil {
		return mine, nil // this instance's unsent or unapplied changes are the newest
	}
	it, err := s.ask(ctx, key, hashed)
	if err != nil {
		if mine != nil && ctx.Err() == nil {
			return mine, nil
		}
		return nil, err
	}
	return s.resolve(id, key, it, mine, ver, pending, now)
}

// resolve returns the newer of this instance's copy (mine, at version ver) and the stored
// item it (nil if none), and keeps it as this instance's.
func (s *Store) resolve(id, key string, it *record.Item, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	if it != nil && it.State == record.Destroyed {
		// Logged out elsewhere: final, whatever this instance still holds or meant to send.
		s.revoke(key)
		return nil, ErrNotFound
	}
	if it != nil && !pending && !now.Before(it.Deadline()) {
		// Over in the table: the functions take no op of it any more, so a copy that this
		// instance's clock still finds alive (its last save came too late, or the clock is
		// behind) must not be served either. A copy with changes not yet sent or applied
		// is served: they may still come in time.
		s.mu.Lock()
		if e := s.cache.get(key); e != nil && !e.pinned() {
			s.cache.drop(key)
		}
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	// This instance's changes not yet applied (or not yet sent) are newer than the table.
	// An equal version is no proof that the table has them all: deltas apply in any
	// order, so the item may carry this instance's last op but not an earlier one. Until
	// someone writes a newer version, this instance's copy is the complete one.
	if it == nil || pending || (mine != nil && ver >= it.Version) {
		if mine == nil {
			return nil, ErrNotFound
		}
		return mine, nil
	}
	if !it.Readable(now) {
		s.mu.Lock()
		if e := s.cache.get(key); e != nil && !e.pinned() {
			s.cache.drop(key)
		}
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	sess, err := s.sessionOf(it) // sealstore.go: its values opened
	if err != nil {
		return nil, err
	}
	s.clock.observe(it.Version)
	s.mu.Lock()
	e := s.cache.get(key)
	switch {
	case e == nil:
		s.cache.add(&entry{key: key, sess: sess.clone(), ver: it.Version, regBase: registersOf(it)})
	case !e.pinned() && e.ver < it.Version:
		e.sess, e.ver, e.owned, e.regBase = sess.clone(), it.Version, false, registersOf(it) // another instance wrote since
	}
	s.mu.Unlock()
	sess.id = id
	return sess, nil
}

// registersOf is about the bytes the item's attribute registers take.
func registersOf(it *record.Item) int {
	n := 0
	for _, regs := range []map[string]string{it.AttrVers, it.Removed} {
		for name, ver := range regs {
			n += len(name) + len(ver) + 8
		}
	}
	return n
}

func fromItem(it *record.Item) *Session {
	return &Session{
		key: it.Key, principal: it.Principal, group: it.Group,
		created: time.UnixMilli(it.Created), lastAccess: time.UnixMilli(it.LastAccess),
		maxIdle: time.Duration(it.MaxIdle) * time.Second, maxLife: time.Duration(it.MaxLife) * time.Second,
		attrs: cloneAttrs(it.Attrs),
	}
}

// share copies s for a caller of Load: a map of its own, sharing the attribute values,
// which nobody changes in place (Set stores a copy, Get hands one out, and the store
// replaces its copies' maps rather than change them). It is the owner's read path, so
// it copies no values: a fourth of the time of clone for the reference session.
func (s *Session) share() *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Session{
		id: s.id, key: s.key, principal: s.principal, group: s.group,
		created: s.created, lastAccess: s.lastAccess, maxIdle: s.maxIdle, maxLife: s.maxLife,
		attrs: maps.Clone(s.attrs), gen: s.gen,
	}
	if c.attrs == nil {
		c.attrs = map[string][]byte{}
	}
	if len(s.changed) > 0 {
		c.changed = maps.Clone(s.changed)
	}
	return c
}
