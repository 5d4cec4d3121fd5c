// Package retry is the schedule on which the functions retry a queue message that failed
// for a reason that may pass (throttling, an outage, a lost race): the function hides the
// message for Delay(receiveCount) (SQS ChangeMessageVisibility), so that each receive
// waits twice as long as the one before, up to a cap, less a random part so that messages
// that failed together do not all come back together.
//
// The same code says how long a message that keeps failing is retried before the queue's
// redrive policy dead-letters it (Before), which the topology's defaults are tested
// against: they must ride out a 30-minute table outage.
//
//	s := retry.Schedule{Base: 10 * time.Second, Max: 5 * time.Minute}
//	hide := s.Delay(receiveCount, rand.Float64()) // whole seconds, for VisibilityTimeout
//	window := s.Before(20)                        // at least this long before the DLQ
package retry

import (
	"fmt"
	"math"
	"time"
)

// Jitter is the most a delay is shortened at random: a delay is its nominal value times
// 1 − Jitter×u for a uniform u in [0, 1).
const Jitter = 0.2

// MaxDelay is the longest delay: SQS keeps a message hidden at most 12 hours from its
// receive, and the receive's own invocation (at most Lambda's 15 minutes) counts too.
const MaxDelay = 11 * time.Hour

// Schedule is an exponential backoff by receive count.
type Schedule struct {
	// Base is the delay after the first receive. Required, at least a second (SQS takes
	// visibility timeouts in whole seconds).
	Base time.Duration
	// Max caps the nominal delay. Required, from Base to MaxDelay.
	Max time.Duration
}

// Validate says what is wrong with s, naming the field.
func (s Schedule) Validate() error {
	switch {
	case s.Base < time.Second:
		return fmt.Errorf("retry: Base %s is below 1s (SQS visibility timeouts are whole seconds)", s.Base)
	case s.Max < s.Base || s.Max > MaxDelay:
		return fmt.Errorf("retry: Max %s out of range Base (%s) to %s", s.Max, s.Base, MaxDelay)
	}
	return nil
}

// Nominal is the delay after receive number receiveCount (1 for the first) before jitter:
// Base × 2^(receiveCount−1), at most Max.
func (s Schedule) Nominal(receiveCount int) time.Duration {
	d := s.Base
	for i := 1; i < receiveCount && d < s.Max; i++ {
		d *= 2
	}
	return min(d, s.Max)
}

// Delay is how long to hide a message after its receive number receiveCount failed:
// Nominal less up to Jitter of it, by u (uniform in [0, 1): rand.Float64()), rounded up to
// whole seconds. A u out of range is taken as 0 (no jitter).
func (s Schedule) Delay(receiveCount int, u float64) time.Duration {
	if u < 0 || u >= 1 || math.IsNaN(u) {
		u = 0
	}
	secs := math.Ceil(s.Nominal(receiveCount).Seconds() * (1 - Jitter*u))
	return min(time.Duration(secs)*time.Second, MaxDelay)
}

// Least is the shortest Delay after receive number receiveCount: the nominal delay less
// all of its jitter, rounded up.
func (s Schedule) Least(receiveCount int) time.Duration {
	return s.Delay(receiveCount, math.Nextafter(1, 0))
}

// Before is the least time a message that fails every receive is retried before a queue
// with this maxReceiveCount dead-letters it: the least delays after receives 1 to
// maxReceiveCount−1 (after the last one the queue may move it at once). The time the
// function spends on each receive comes on top.
func (s Schedule) Before(maxReceiveCount int) time.Duration {
	var sum time.Duration
	for n := 1; n < maxReceiveCount; n++ {
		sum += s.Least(n)
	}
	return sum
}

// Seconds is d in whole seconds, as SQS's VisibilityTimeout takes it (d from Delay is
// whole already).
func Seconds(d time.Duration) int32 {
	return int32(d / time.Second)
}
