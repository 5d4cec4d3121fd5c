package replication

import (
	"slices"
	"testing"
	"time"
)

// The jitter is drawn from the seed: the same seed gives the same delays, link by link,
// all within Lag ± Jitter; another seed gives others.
func TestDelaysFromSeed(t *testing.T) {
	delays := func(seed uint64) [][]time.Duration {
		o, err := Options{Lag: 100 * time.Millisecond, Jitter: 40 * time.Millisecond, Seed: seed}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		rp := &Replicator{o: o, seed: seed}
		var all [][]time.Duration
		for n := range uint64(3) {
			l := &link{rng: newLinkRand(seed, n+1)}
			var ds []time.Duration
			for range 50 {
				d := rp.delay(l)
				if d < 60*time.Millisecond || d > 140*time.Millisecond {
					t.Fatalf("delay %s outside 100 ms ± 40 ms", d)
				}
				ds = append(ds, d)
			}
			all = append(all, ds)
		}
		return all
	}
	a, b, c := delays(42), delays(42), delays(43)
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			t.Errorf("link %d: seed 42 gave two different sequences", i)
		}
		if slices.Equal(a[i], c[i]) {
			t.Errorf("link %d: seeds 42 and 43 gave the same sequence", i)
		}
	}
	if slices.Equal(a[0], a[1]) {
		t.Error("two links share one sequence")
	}
}

// Percentiles are nearest-rank over the most recent samples only.
func TestLagSummary(t *testing.T) {
	l := newLags(100)
	if got := l.summary(); got != (Lag{}) {
		t.Errorf("no samples: %+v", got)
	}
	for i := range 250 { // 1..250 ms; the window keeps 151..250
		l.add(time.Duration(i+1) * time.Millisecond)
	}
	want := Lag{Samples: 100, Min: 151 * time.Millisecond, P50: 200 * time.Millisecond, P90: 240 * time.Millisecond,
		P99: 249 * time.Millisecond, Max: 250 * time.Millisecond}
	if got := l.summary(); got != want {
		t.Errorf("summary %+v, want %+v", got, want)
	}
}

// The backoff doubles from RetryMin up to RetryMax.
func TestBackoff(t *testing.T) {
	rp := &Replicator{o: Options{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, rp.backoff(n))
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Errorf("backoff %v, want %v", got, want)
	}
}
