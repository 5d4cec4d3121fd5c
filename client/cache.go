package client

import "container/list"

// entry is this instance's copy of one session and what of it is not yet persisted.
// Every field is guarded by Store.mu, but written, which fileStore.mu guards.
type entry struct {
	key  string
	sess *Session      // private: callers get clones; never holds the id in clear
	ver  string        // record version (hlc/writer) the copy reflects; "" if unknown
	elem *list.Element // in the LRU while evictable, nil while pinned

	// owned: this instance wrote ver, and no superseded notice has said that another
	// instance wrote since (owner.go): with owner reads, Load serves the copy as it is.
	owned bool

	// What is not yet persisted, each as the seq of the change that last needed it, so
	// that a send built at seq N clears only what it carried: a change made while it was
	// on its way stays to be sent.
	seq      uint64
	create   bool              // the create itself
	full     uint64            // the whole session (scopes session and modified-session, or changed while degraded)
	touch    uint64            // the last access only (modified-attribute)
	changed  map[string]uint64 // attributes set or removed (modified-attribute)
	inflight int               // sends under way

	// The attribute registers the item holds, as far as this instance knows (send.go's
	// registerBudget): their size when it read the item, and the names its own deltas
	// set or removed since its last whole session, each with the seq it was sent at.
	regBase int
	regs    map[string]uint64

	written string // file: version of the last file written, so that an older write never replaces a newer one

	// Degraded mode's journal (ha): jseq is the seq of the last change journaled and not
	// yet sent (0: nothing), jver the version (hlc) it was journaled with. While the
	// entry has changed no further (jseq == seq), its op goes out with that version, so
	// that the journal and the bus carry the same op: replayed after a crash, it is no
	// newer than what other instances wrote meanwhile.
	jseq uint64
	jver string
}

// unsent reports whether the entry has changes not yet persisted.
func (e *entry) unsent() bool {
	return e.create || e.full != 0 || e.touch != 0 || len(e.changed) != 0
}

// pinned entries are never evicted: that would lose their changes.
func (e *entry) pinned() bool { return e.unsent() || e.inflight > 0 }

// cache holds the sessions of one instance, bounded by max: least recently used first to
// go, pinned entries excepted. Its methods are called with Store.mu held.
type cache struct {
	max     int
	entries map[string]*entry
	lru     *list.List        // evictable entries, most recently used first
	pending map[string]*entry // entries with unsent changes
}

func newCache(max int) cache {
	return cache{max: max, entries: map[string]*entry{}, lru: list.New(), pending: map[string]*entry{}}
}

// get returns the entry of key, or nil.
func (c *cache) get(key string) *entry { return c.entries[key] }

// use is get for a read: the entry becomes the most recently used.
func (c *cache) use(key string) *entry {
	e := c.entries[key]
	if e != nil && e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	return e
}

// add puts e in the cache (replacing any entry of its key), or settles it if it is there
// already, and evicts beyond max. Record e's unsent changes first, so that it is pinned.
func (c *cache) add(e *entry) {
	if old := c.entries[e.key]; old != nil && old != e {
		c.drop(e.key)
	}
	c.entries[e.key] = e
	c.settle(e)
}

// settle files e as pinned or evictable after a change of its state, and evicts beyond max.
func (c *cache) settle(e *entry) {
	if c.entries[e.key] != e {
		return // dropped meanwhile (destroyed, expired)
	}
	if e.unsent() {
		c.pending[e.key] = e
	} else {
		delete(c.pending, e.key)
	}
	switch {
	case e.pinned() && e.elem != nil:
		c.lru.Remove(e.elem)
		e.elem = nil
	case !e.pinned() && e.elem == nil:
		e.elem = c.lru.PushFront(e)
	case e.elem != nil:
		c.lru.MoveToFront(e.elem)
	}
	for len(c.entries) > c.max && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*entry)
		old.elem = nil
		delete(c.entries, old.key)
	}
}

// drop forgets key, unsent changes included.
func (c *cache) drop(key string) {
	e := c.entries[key]
	if e == nil {
		return
	}
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	delete(c.entries, key)
	delete(c.pending, key)
}

// pendingDestroy is a destroy not yet sent, or whose notice is still owed (ha).
type pendingDestroy struct {
	body     []byte
	hashed   string // the session's hashed id
	reason   string
	inflight bool   // the op or the notice is being sent
	sent     bool   // the bus took the op; only the notice may be owed
	ver      string // the op's record version, for the table
	until    int64  // the session's latest possible deadline (unix ms) the op carries
	notice   bool   // a destroy notice is owed
}
