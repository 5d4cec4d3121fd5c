package replication

import (
	"math"
	"slices"
	"time"
)

// Stats counts deliveries since New: one delivery is one change owed to one other region
// (a change in a region of three is two deliveries). Every delivery is in exactly one of
// Delivered, Lost, Dropped and Pending, so Deliveries is their sum.
type Stats struct {
	// Deliveries owed: each change a region made, times each other region alive then.
	Deliveries int64
	// Delivered reached their destination: Applied there, or Superseded by a later
	// write to the item that the destination already held.
	Delivered, Applied, Superseded int64
	// Lost are deliveries of a killed region's changes that never left it: pending when
	// it was killed, or made after.
	Lost int64
	// Dropped were pending to a region when it was killed.
	Dropped int64
	// Pending are not delivered yet: waiting out their lag, held by a partition,
	// retrying after a failed attempt, or being applied. Held and Retrying count those
	// of them on a partitioned link and those that failed at least once (a delivery can
	// be both).
	Pending, Held, Retrying int64
	// Failures counts failed attempts to apply a change (each retried); Err says why.
	Failures int64
	// Lag is the replication lag of the most recent deliveries (Options.LagWindow).
	Lag Lag
}

// Lag summarises replication lags: for each delivery, the time from the source write
// (Change.At) to its application or to finding it superseded in the destination.
type Lag struct {
	Samples                 int // deliveries summarised
	Min, P50, P90, P99, Max time.Duration
}

// lags is a ring of the most recent lag samples.
type lags struct {
	ring []time.Duration
	next int
	full bool
}

func newLags(n int) *lags { return &lags{ring: make([]time.Duration, n)} }

func (l *lags) add(d time.Duration) {
	l.ring[l.next] = d
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
}

func (l *lags) summary() Lag {
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	if n == 0 {
		return Lag{}
	}
	s := slices.Clone(l.ring[:n])
	slices.Sort(s)
	// Nearest rank: the smallest sample with at least p of them at or below it.
	at := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(n))) - 1
		return s[min(max(i, 0), n-1)]
	}
	return Lag{Samples: n, Min: s[0], P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[n-1]}
}
