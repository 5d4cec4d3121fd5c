package client

import "sync/atomic"

// Stats are a Store's counters since Open: the four amsessiondb printed (requests, reads,
// writes, deletes), and what failover adds. Counters only grow; Mode, Cached and Pending
// are as of the call.
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
}

// Stats returns the store's counters. It is safe to call at any time, after Close too.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	cached, pending := len(s.cache.entries), len(s.cache.pending)+len(s.destroys)
	s.mu.Unlock()
	return Stats{
		Requests: s.stats.requests.Load(), Reads: s.stats.reads.Load(),
		Writes: s.stats.writes.Load(), Deletes: s.stats.deletes.Load(),
		CacheHits: s.stats.cacheHits.Load(), Sent: s.stats.sent.Load(),
		PublishFailures: s.stats.publishFailures.Load(), ModeSwitches: s.stats.modeSwitches.Load(),
		BusQueries: s.stats.busQueries.Load(), BusTimeouts: s.stats.busTimeouts.Load(), Notices: s.stats.notices.Load(),
		OwnedLoads: s.stats.ownedLoads.Load(), Superseded: s.stats.superseded.Load(),
		AppliedWaits: s.stats.appliedWaits.Load(), AppliedTimeouts: s.stats.appliedTimeouts.Load(),
		Mode: s.Mode(), Cached: cached, Pending: pending,
	}
}
