package replication

import (
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Replicator; the zero value means the defaults named on each field.
type Options struct {
	// Lag is the typical time a change takes to reach another region. Default 500 ms
	// (see the package doc for why).
	Lag time.Duration
	// Jitter spreads each delivery's delay uniformly over Lag ± Jitter; at most Lag.
	// Default Lag/2 (250 ms with the default Lag).
	Jitter time.Duration
	// Seed seeds the jitter, so that a failing run can be replayed with the same delays
	// (the interleaving of goroutines aside). Default 0: a random seed, which Seed reports.
	Seed uint64
	// RetryMin and RetryMax bound the exponential backoff between attempts to apply a
	// change that failed. Defaults 10 ms and 1 s (RetryMin, if that is more).
	RetryMin, RetryMax time.Duration
	// LagWindow is how many of the most recent deliveries the lag percentiles of Stats
	// cover. Default 10000.
	LagWindow int
	// Logger receives a line when a link starts and stops failing to apply changes,
	// naming regions and the table, never an item. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"Lag", o.Lag}, {"Jitter", o.Jitter}, {"RetryMin", o.RetryMin}, {"RetryMax", o.RetryMax}} {
		if f.v < 0 {
			return o, fmt.Errorf("%w: Options.%s %s: want a positive duration, or 0 for the default", ErrInvalid, f.name, f.v)
		}
	}
	if o.LagWindow < 0 {
		return o, fmt.Errorf("%w: Options.LagWindow %d: want a positive count, or 0 for the default", ErrInvalid, o.LagWindow)
	}
	if o.Lag == 0 {
		o.Lag = 500 * time.Millisecond
	}
	if o.Jitter == 0 {
		o.Jitter = o.Lag / 2
	}
	if o.Jitter > o.Lag {
		return o, fmt.Errorf("%w: Options.Jitter %s is more than Options.Lag %s: a delay would be negative", ErrInvalid, o.Jitter, o.Lag)
	}
	if o.RetryMin == 0 {
		o.RetryMin = 10 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(time.Second, o.RetryMin)
	}
	if o.RetryMin > o.RetryMax {
		return o, fmt.Errorf("%w: Options.RetryMin %s is more than Options.RetryMax %s", ErrInvalid, o.RetryMin, o.RetryMax)
	}
	if o.LagWindow == 0 {
		o.LagWindow = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
