package dynamo

import (
	"errors"
	"fmt"
	"time"
)

// Cause says why an item changed.
type Cause int

const (
	// CauseWrite: a client's PutItem, UpdateItem, DeleteItem, batch or transaction.
	CauseWrite Cause = iota
	// CauseTTL: the TTL sweeper deleted an expired item. On AWS its stream record names
	// the service (principal dynamodb.amazonaws.com) as the one who deleted it.
	CauseTTL
	// CauseReplication: a change made in another region's replica, applied here.
	CauseReplication
)

func (c Cause) String() string {
	switch c {
	case CauseWrite:
		return "write"
	case CauseTTL:
		return "ttl"
	case CauseReplication:
		return "replication"
	}
	return fmt.Sprintf("Cause(%d)", int(c))
}

// Change is one item's change in one replica: the replica's change feed, what DynamoDB
// Streams carries on AWS (with new and old images) and what global-table replication
// sends to the other regions. A write that leaves an item as it was is no change, as on
// AWS.
type Change struct {
	Seq   uint64 // order of the changes of this replica, from 1
	Table string
	Key   Item // the key attributes
	Old   Item // the item before; nil if it did not exist
	New   Item // the item after; nil if it was deleted
	// At is when the write happened in its origin region: the order in which
	// last-writer-wins replication resolves concurrent writes to one item.
	At     time.Time
	Origin string // the region whose replica took the write
	Cause  Cause
}

// stamp is the last write an item (or its deletion) took: what a replicated change
// must be newer than to apply.
type stamp struct {
	at     time.Time
	origin string
}

func (s stamp) before(at time.Time, origin string) bool {
	return s.at.Before(at) || (s.at.Equal(at) && s.origin < origin)
}

// Subscribe calls fn with every change of this replica from now on, in order, until
// cancel is called. fn runs while the replica holds its write lock: it must be quick and
// must not call the replica (queue the change and return).
func (r *Replica) Subscribe(fn func(Change)) (cancel func()) {
	r.smu.Lock()
	defer r.smu.Unlock()
	id := r.nextSub
	r.nextSub++
	r.subs[id] = fn
	return func() {
		r.smu.Lock()
		defer r.smu.Unlock()
		delete(r.subs, id)
	}
}

// emitLocal stamps and publishes a change made in this replica (a client's write or the
// TTL sweeper). The caller holds wmu.
func (r *Replica) emitLocal(t *table, key Item, ks string, old, new Item, cause Cause) {
	if old.Equal(new) {
		return
	}
	at := r.o.Now()
	stamps := r.stampsOf(t.name)
	if prev, ok := stamps[ks]; ok && !prev.at.Before(at) {
		at = prev.at.Add(time.Nanosecond) // each write of an item later than the one before
	}
	stamps[ks] = stamp{at: at, origin: r.o.Region}
	r.publish(Change{Table: t.name, Key: key, Old: old, New: new, At: at, Origin: r.o.Region, Cause: cause})
}

func (r *Replica) stampsOf(table string) map[string]stamp {
	m, ok := r.stamps[table]
	if !ok {
		m = map[string]stamp{}
		r.stamps[table] = m
	}
	return m
}

func (r *Replica) publish(c Change) {
	r.seq++
	c.Seq = r.seq
	r.smu.Lock()
	defer r.smu.Unlock()
	for _, fn := range r.subs {
		fn(c)
	}
}

// ErrNoTable means a replicated change names a table this replica does not have.
var ErrNoTable = errors.New("dynamo: no such table in this replica")

// Replicate applies a change made in another region if it is newer than the last write
// this replica holds for the item (per item, the later At wins and, at equal times, the
// greater Origin), as a global table in multi-region eventual consistency does; it
// reports whether it applied. An applied change is a change of this replica too
// (CauseReplication). Conditions are never evaluated: each region checks its own.
func (r *Replica) Replicate(c Change) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	t, ok := r.tables[c.Table]
	if !ok {
		return false, fmt.Errorf("%w: %s in %s", ErrNoTable, c.Table, r.o.Region)
	}
	key, ks, err := t.keyOf(c.Key)
	if err != nil {
		return false, err
	}
	stamps := r.stampsOf(t.name)
	if prev, ok := stamps[ks]; ok && !prev.before(c.At, c.Origin) {
		return false, nil
	}
	old, err := r.getItem(t.name, key)
	if err != nil {
		return false, err
	}
	if c.New != nil {
		err = r.engineCall("PutItem", map[string]any{"TableName": t.name, "Item": c.New}, nil)
	} else {
		err = r.engineCall("DeleteItem", map[string]any{"TableName": t.name, "Key": key}, nil)
	}
	if err != nil {
		return false, err
	}
	stamps[ks] = stamp{at: c.At, origin: c.Origin}
	if c.New != nil {
		r.trackExpiry(t, c.New, nil)
	} else {
		r.trackExpiry(t, nil, &ks)
	}
	if !old.Equal(c.New) {
		r.publish(Change{Table: t.name, Key: key, Old: old, New: c.New.Clone(), At: c.At, Origin: c.Origin, Cause: CauseReplication})
	}
	return true, nil
}
