package replication

import (
	"container/heap"
	"fmt"
	"time"
)

// Partition cuts the link between regions a and b, both ways: their changes to each other
// queue up (Stats.Held) until Heal. Changes being applied at that moment still arrive.
// Partitioning a pair already partitioned changes nothing.
func (rp *Replicator) Partition(a, b string) error {
	ab, ba, err := rp.pair(a, b)
	if err != nil {
		return err
	}
	defer rp.mu.Unlock()
	ab.held, ba.held = true, true
	return nil
}

// Heal restores the link between regions a and b: what queued up while they were
// partitioned is delivered, each change after a fresh lag from now (or its first one,
// if that is later). Healing a pair not partitioned changes nothing.
func (rp *Replicator) Heal(a, b string) error {
	ab, ba, err := rp.pair(a, b)
	if err != nil {
		return err
	}
	defer rp.mu.Unlock()
	now := time.Now()
	for _, l := range []*link{ab, ba} {
		if !l.held {
			continue
		}
		l.held = false
		for _, d := range l.q {
			if due := now.Add(rp.delay(l)); due.After(d.due) {
				d.due = due
			}
		}
		heap.Init(&l.q)
		l.signal()
	}
	return nil
}

// pair returns the links a->b and b->a with mu held, or an error without it.
func (rp *Replicator) pair(a, b string) (ab, ba *link, err error) {
	ra, rb := rp.byName[a], rp.byName[b]
	switch {
	case ra == nil:
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownRegion, a)
	case rb == nil:
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownRegion, b)
	case ra == rb:
		return nil, nil, fmt.Errorf("%w: a region cannot be cut off from itself (%q)", ErrInvalid, a)
	}
	rp.mu.Lock()
	switch {
	case rp.closed:
		err = ErrClosed
	case ra.dead:
		err = fmt.Errorf("%w: %s", ErrKilled, a)
	case rb.dead:
		err = fmt.Errorf("%w: %s", ErrKilled, b)
	}
	if err != nil {
		rp.mu.Unlock()
		return nil, nil, err
	}
	for _, l := range ra.out {
		if l.to == rb {
			ab = l
		}
	}
	for _, l := range rb.out {
		if l.to == ra {
			ba = l
		}
	}
	return ab, ba, nil
}

// Kill takes a region down for good, as a region lost with its storage: its changes not
// yet delivered are lost (Stats.Lost, per destination), and so are any it makes later; it
// receives nothing more (what was on its way to it is Stats.Dropped). Changes being
// applied when Kill is called finish first: once it returns, nothing more leaves or
// reaches the region. Its replica keeps answering requests; stop its server to make it
// unreachable too.
func (rp *Replicator) Kill(name string) error {
	reg := rp.byName[name]
	if reg == nil {
		return fmt.Errorf("%w: %q", ErrUnknownRegion, name)
	}
	rp.gate.Lock()
	defer rp.gate.Unlock()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	switch {
	case rp.closed:
		return ErrClosed
	case reg.dead:
		return fmt.Errorf("%w: %s", ErrKilled, name)
	}
	reg.dead = true
	drain := func(l *link) int64 {
		n := int64(len(l.q))
		for _, d := range l.q {
			if d.attempts > 0 {
				rp.retrying--
			}
		}
		l.q = nil
		rp.settled(n)
		return n
	}
	for _, l := range reg.out {
		rp.st.Lost += drain(l)
	}
	for _, l := range reg.in {
		rp.st.Dropped += drain(l)
	}
	return nil
}
