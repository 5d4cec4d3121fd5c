package client

import (
	"sync/atomic"
	"time"
)

// Stats are a Store's counters since Open: the four amsessiondb printed (requests, reads,
// writes, deletes), and what failover adds. Counters only grow (Degraded too); Mode,
// Cached and Pending are as of the call. Requests is always Reads+Writes+Deletes.
// Package client/otelmetrics exports them as OpenTelemetry metrics.
type Stats struct {
	Requests int64 // calls of Create, Save, Load and Destroy
	Reads    int64 // Load calls
	Writes   int64 // Create and Save calls
	Deletes  int64 // Destroy calls

	// CacheHits counts the Loads that found the session in this instance's memory.
	CacheHits int64
	// Sent counts the ops the persistence took: messages the bus accepted (ha) or files
	// written (file). With time-based frequency, the changes of one interval to one
	// session are one op.
	Sent int64
	// PublishFailures counts publish calls that failed, the SDK's retries spent or
	// PublishTimeout passed, probes of the bus while degraded included.
	PublishFailures int64
	// ModeSwitches counts switches between failover and degraded mode, either way.
	ModeSwitches int64
	// Degraded is how long the store has been in degraded mode since Open, in total: the
	// stretches that ended, and the one under way if it is degraded now (until Close).
	Degraded time.Duration
	// BusQueries counts failover queries sent over the bus (ReadPath bus), and
	// BusTimeouts those that got no answer within MaxWait.
	BusQueries, BusTimeouts int64
	// Notices counts destroy notices taken from the notice topic.
	Notices int64
	// OwnedLoads counts the Loads served from memory because this instance owns the
	// session (Reads owner), with no AWS call: a part of CacheHits.
	OwnedLoads int64
	// Superseded counts the superseded notices taken: another instance wrote a session
	// this instance held, or an op of this instance's lost to a newer one.
	Superseded int64
	// AppliedWaits counts the Creates and Saves that waited until their change was in the
	// table (SaveWait applied, SaveApplied), and AppliedTimeouts those that waited
	// MaxWait in vain.
	AppliedWaits, AppliedTimeouts int64

	Mode    Mode
	Cached  int // sessions held in memory
	Pending int // sessions with changes not yet sent, and destroys not yet sent
}

type counters struct {
	requests, reads, writes, deletes               atomic.Int64
	cacheHits, sent, publishFailures, modeSwitches atomic.Int64
	busQueries, busTimeouts, notices               atomic.Int64
	ownedLoads, superseded                         atomic.Int64
	appliedWaits, appliedTimeouts                  atomic.Int64
	// degraded is the nanoseconds of the degraded stretches that ended: added under mu
	// as the mode goes back to failover, or at Close, so that Stats never counts a
	// stretch twice.
	degraded atomic.Int64
	// stopped: Close ended the count of degraded time (under mu). A closed store
	// serves nobody, so it is not degraded any longer, whatever its mode says.
	stopped bool
}

// Stats returns the store's counters. It is safe to call at any time, after Close too.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	cached, pending := len(s.cache.entries), len(s.cache.pending)+len(s.destroys)
	degraded := time.Duration(s.stats.degraded.Load())
	if s.Mode() == ModeDegraded && !s.stats.stopped {
		degraded += time.Since(s.degradedAt)
	}
	s.mu.Unlock()
	return Stats{
		Requests: s.stats.requests.Load(), Reads: s.stats.reads.Load(),
		Writes: s.stats.writes.Load(), Deletes: s.stats.deletes.Load(),
		CacheHits: s.stats.cacheHits.Load(), Sent: s.stats.sent.Load(),
		PublishFailures: s.stats.publishFailures.Load(), ModeSwitches: s.stats.modeSwitches.Load(), Degraded: degraded,
		BusQueries: s.stats.busQueries.Load(), BusTimeouts: s.stats.busTimeouts.Load(), Notices: s.stats.notices.Load(),
		OwnedLoads: s.stats.ownedLoads.Load(), Superseded: s.stats.superseded.Load(),
		AppliedWaits: s.stats.appliedWaits.Load(), AppliedTimeouts: s.stats.appliedTimeouts.Load(),
		Mode: s.Mode(), Cached: cached, Pending: pending,
	}
}

// stopDegradedClock ends the count of degraded time at Close: a store that closes
// degraded adds the stretch under way, and Degraded stays as it is from then on.
func (s *Store) stopDegradedClock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Mode() == ModeDegraded && !s.stats.stopped {
		s.stats.degraded.Add(int64(time.Since(s.degradedAt)))
	}
	s.stats.stopped = true
}
