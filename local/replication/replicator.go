package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sessionha/sessionha/local/dynamo"
)

// Replicator delivers every change of each replica to every other one, after a lag, as
// a global table's replication does. It is safe for concurrent use. Close stops it.
type Replicator struct {
	o       Options
	seed    uint64
	regions []*region // fixed at New
	byName  map[string]*region
	cancels []func()

	// gate is held shared while a change is being applied and exclusively by Kill, so
	// that once Kill returns nothing more reaches or leaves the killed region.
	gate sync.RWMutex

	mu       sync.Mutex
	closed   bool
	seq      uint64
	st       Stats // the counters; Pending, Held, Retrying and Lag are filled by Stats
	pending  int64
	retrying int64
	lags     *lags
	lastErr  error
	idle     chan struct{} // closed when pending falls to 0; nil while nobody waits

	stop chan struct{}
	wg   sync.WaitGroup
}

// region is one replica and its links to and from every other region.
type region struct {
	name    string
	replica *dynamo.Replica
	dead    bool // under mu
	out, in []*link
}

// link carries one region's changes to another, in a queue of its own: one slow or
// failing destination holds up no other.
type link struct {
	from, to *region
	q        queue      // under mu
	held     bool       // partitioned; under mu
	failing  bool       // the last attempt failed; under mu
	rng      *rand.Rand // the jitter; under mu
	wake     chan struct{}
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// New starts replicating among replicas, one per region (named by its Region), from now
// on. Create the tables in every replica before writing to them.
func New(replicas []*dynamo.Replica, o Options) (*Replicator, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(replicas) == 0 {
		return nil, fmt.Errorf("%w: no replicas", ErrInvalid)
	}
	rp := &Replicator{o: o, seed: o.Seed, byName: map[string]*region{}, lags: newLags(o.LagWindow), stop: make(chan struct{})}
	for rp.seed == 0 {
		rp.seed = rand.Uint64()
	}
	for i, r := range replicas {
		if r == nil {
			return nil, fmt.Errorf("%w: replica %d is nil", ErrInvalid, i)
		}
		if _, dup := rp.byName[r.Region()]; dup {
			return nil, fmt.Errorf("%w: two replicas of region %q: want one per region", ErrInvalid, r.Region())
		}
		reg := &region{name: r.Region(), replica: r}
		rp.regions = append(rp.regions, reg)
		rp.byName[reg.name] = reg
	}
	n := uint64(0)
	for _, from := range rp.regions {
		for _, to := range rp.regions {
			if from == to {
				continue
			}
			n++
			l := &link{from: from, to: to, rng: newLinkRand(rp.seed, n), wake: make(chan struct{}, 1)}
			from.out = append(from.out, l)
			to.in = append(to.in, l)
			rp.wg.Add(1)
			go rp.run(l)
		}
	}
	for _, reg := range rp.regions {
		rp.cancels = append(rp.cancels, reg.replica.Subscribe(func(c dynamo.Change) { rp.capture(reg, c) }))
	}
	return rp, nil
}

// Regions names the regions, in the order of New's replicas.
func (rp *Replicator) Regions() []string {
	names := make([]string, len(rp.regions))
	for i, reg := range rp.regions {
		names[i] = reg.name
	}
	return names
}

// Seed is the seed of the jitter: Options.Seed, or the one drawn when it was 0.
func (rp *Replicator) Seed() uint64 { return rp.seed }

// capture queues a region's own change for every other region. It runs under the
// replica's write lock, so it only queues.
func (rp *Replicator) capture(reg *region, c dynamo.Change) {
	if c.Cause == dynamo.CauseReplication || c.Origin != reg.name {
		return // another region's change, applied here: its origin sends it
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.closed {
		return
	}
	now := time.Now()
	for _, l := range reg.out {
		if l.to.dead {
			continue
		}
		rp.st.Deliveries++
		if reg.dead {
			rp.st.Lost++
			continue
		}
		rp.seq++
		l.q.push(&delivery{c: c, due: now.Add(rp.delay(l)), seq: rp.seq})
		rp.pending++
		l.signal()
	}
}

// newLinkRand is the jitter source of the n-th link: its own stream of the seed, so that
// a link's delays do not depend on how the regions' writes interleave.
func newLinkRand(seed, n uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, n)) }

// delay draws a delivery's delay: Lag ± Jitter, uniformly. The caller holds mu.
func (rp *Replicator) delay(l *link) time.Duration {
	j := int64(rp.o.Jitter)
	return rp.o.Lag + time.Duration(l.rng.Int64N(2*j+1)-j)
}

// run delivers a link's changes as they fall due, until Close.
func (rp *Replicator) run(l *link) {
	defer rp.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		rp.mu.Lock()
		closed, ready, wait := rp.closed, false, time.Duration(-1) // -1: until woken
		if rp.deliverable(l) {
			if d := l.q.peek(); d != nil {
				if wait = time.Until(d.due); wait <= 0 {
					ready = true
				}
			}
		}
		rp.mu.Unlock()
		switch {
		case closed:
			return
		case ready:
			rp.deliverNext(l)
			continue
		}
		var due <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-rp.stop:
			timer.Stop()
			return
		case <-l.wake:
		case <-due:
		}
		timer.Stop()
	}
}

// deliverable: the link may carry changes now. The caller holds mu.
func (rp *Replicator) deliverable(l *link) bool {
	return !rp.closed && !l.held && !l.from.dead && !l.to.dead
}

// deliverNext applies the link's first change if it is still due and deliverable.
func (rp *Replicator) deliverNext(l *link) {
	rp.gate.RLock()
	defer rp.gate.RUnlock()
	rp.mu.Lock()
	d := l.q.peek()
	if !rp.deliverable(l) || d == nil || time.Now().Before(d.due) {
		rp.mu.Unlock()
		return
	}
	l.q.pop()
	rp.mu.Unlock()

	// Replicate takes the destination's locks and publishes there: never under mu.
	applied, err := l.to.replica.Replicate(d.c)
	now := time.Now()

	rp.mu.Lock()
	defer rp.mu.Unlock()
	if err != nil {
		rp.st.Failures++
		if d.attempts == 0 {
			rp.retrying++
		}
		d.attempts++
		d.due = now.Add(rp.backoff(d.attempts))
		l.q.push(d)
		rp.lastErr = fmt.Errorf("%w: from %s to %s, table %s: %w", ErrApply, l.from.name, l.to.name, d.c.Table, err)
		if !l.failing {
			l.failing = true
			reason := "apply failed (Replicator.Err says why)"
			if errors.Is(err, dynamo.ErrNoTable) {
				reason = "table missing in the destination"
			}
			rp.o.Logger.Warn("replication: changes cannot be applied, retrying", "from", l.from.name, "to", l.to.name, "table", d.c.Table, "reason", reason)
		}
		return
	}
	if l.failing {
		l.failing = false
		rp.o.Logger.Info("replication: changes apply again", "from", l.from.name, "to", l.to.name)
	}
	if d.attempts > 0 {
		rp.retrying--
	}
	rp.st.Delivered++
	if applied {
		rp.st.Applied++
	} else {
		rp.st.Superseded++
	}
	rp.lags.add(now.Sub(d.c.At))
	rp.settled(1)
}

// backoff is the wait after the n-th failed attempt: RetryMin doubled n-1 times, at most
// RetryMax.
func (rp *Replicator) backoff(n int) time.Duration {
	d := rp.o.RetryMin
	for i := 1; i < n && d < rp.o.RetryMax; i++ {
		d *= 2
	}
	return min(d, rp.o.RetryMax)
}

// settled accounts for n deliveries leaving Pending. The caller holds mu.
func (rp *Replicator) settled(n int64) {
	rp.pending -= n
	if rp.pending == 0 && rp.idle != nil {
		close(rp.idle)
		rp.idle = nil
	}
}

// Quiesce waits until no delivery is pending: every change made so far has reached
// every live region. Changes held by a partition are pending: heal it first (or from
// another goroutine). When ctx ends first, the error says what is still pending and
// wraps ctx's error and, if changes are failing, Err's.
func (rp *Replicator) Quiesce(ctx context.Context) error {
	for {
		rp.mu.Lock()
		if rp.closed {
			rp.mu.Unlock()
			return ErrClosed
		}
		if rp.pending == 0 {
			rp.mu.Unlock()
			return nil
		}
		if rp.idle == nil {
			rp.idle = make(chan struct{})
		}
		idle := rp.idle
		rp.mu.Unlock()
		select {
		case <-idle:
		case <-rp.stop:
			return ErrClosed
		case <-ctx.Done():
			s := rp.Stats()
			err := fmt.Errorf("replication: quiesce: %w: %d deliveries pending (%d held by partitions, %d retrying)",
				ctx.Err(), s.Pending, s.Held, s.Retrying)
			if e := rp.Err(); e != nil {
				err = errors.Join(err, e)
			}
			return err
		}
	}
}

// Err says why the latest failed attempt to apply a change failed, wrapping ErrApply
// and the cause, while any change is waiting to be retried; nil when none is. Its
// message may quote the change (the store's own errors do): do not log it.
func (rp *Replicator) Err() error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.retrying == 0 {
		return nil
	}
	return rp.lastErr
}

// Stats returns the counts since New and the recent lag.
func (rp *Replicator) Stats() Stats {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	s := rp.st
	s.Pending, s.Retrying = rp.pending, rp.retrying
	for _, reg := range rp.regions {
		for _, l := range reg.out {
			if l.held {
				s.Held += int64(len(l.q))
			}
		}
	}
	s.Lag = rp.lags.summary()
	return s
}

// Close stops replicating and waits for the changes being applied. What is pending stays
// undelivered (Stats still counts it). The replicas keep running.
func (rp *Replicator) Close() {
	rp.mu.Lock()
	if rp.closed {
		rp.mu.Unlock()
		return
	}
	rp.closed = true
	rp.mu.Unlock()
	for _, cancel := range rp.cancels {
		cancel()
	}
	close(rp.stop)
	rp.wg.Wait()
}
