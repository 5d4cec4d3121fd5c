package retry

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestNominalDoublesToMax(t *testing.T) {
	s := Schedule{Base: 10 * time.Second, Max: 5 * time.Minute}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := s.Nominal(i + 1); got != w {
			t.Errorf("Nominal(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := s.Nominal(1000); got != 5*time.Minute {
		t.Errorf("Nominal(1000) = %s: the cap must hold however many receives", got)
	}
	if got := s.Nominal(0); got != 10*time.Second {
		t.Errorf("Nominal(0) = %s: an unknown count is a first receive", got)
	}
}

func TestDelayJitteredWholeSecondsWithinBounds(t *testing.T) {
	s := Schedule{Base: 3 * time.Second, Max: 100 * time.Second}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[time.Duration]bool{}
	for n := 1; n <= 12; n++ {
		nominal := s.Nominal(n)
		for range 200 {
			d := s.Delay(n, r.Float64())
			if d%time.Second != 0 {
				t.Fatalf("Delay(%d) = %s: not whole seconds", n, d)
			}
			if d > nominal+time.Second-1 || d < s.Least(n) || float64(d) < float64(nominal)*(1-Jitter) {
				t.Fatalf("Delay(%d) = %s outside [%s, %s]", n, d, s.Least(n), nominal)
			}
			if n == 6 {
				seen[d] = true
			}
		}
	}
	if len(seen) < 5 {
		t.Errorf("Delay(6) took %d values over 200 draws: no jitter", len(seen))
	}
	if got := s.Delay(1, 0); got != 3*time.Second {
		t.Errorf("Delay(1, 0) = %s, want the base", got)
	}
	if got := s.Delay(1, 7); got != 3*time.Second {
		t.Errorf("Delay with u out of range = %s, want no jitter", got)
	}
	// 3 s less 20 % is 2.4 s: rounded up, never down to a shorter wait.
	if got := s.Least(1); got != 3*time.Second {
		t.Errorf("Least(1) = %s, want 3s (2.4s rounded up)", got)
	}
}

func TestBeforeSumsLeastDelays(t *testing.T) {
	s := Schedule{Base: 10 * time.Second, Max: 5 * time.Minute}
	// 8+16+32+64+128 s, then 240 s for each further receive but the last.
	if got, want := s.Before(20), (248+14*240)*time.Second; got != want {
		t.Errorf("Before(20) = %s, want %s", got, want)
	}
	if got := s.Before(1); got != 0 {
		t.Errorf("Before(1) = %s: a queue that dead-letters after one receive retries nothing", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Schedule
		want string
	}{
		{Schedule{Base: 500 * time.Millisecond, Max: time.Minute}, "Base"},
		{Schedule{Base: time.Minute, Max: time.Second}, "Max"},
		{Schedule{Base: time.Second, Max: 12 * time.Hour}, "Max"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.s, err, tc.want)
		}
	}
	if err := (Schedule{Base: time.Second, Max: MaxDelay}).Validate(); err != nil {
		t.Error(err)
	}
}
