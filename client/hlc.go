package client

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clock is a hybrid logical clock: wall milliseconds in the high 48 bits, a counter in
// the low 16. It never goes back, and observing another writer's version moves it past
// that version, so a failed-over instance's save is newer than what it loaded even when
// its wall clock is behind the dead instance's.
type clock struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

func (c *clock) next() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := uint64(c.now().UnixMilli()) << 16
	if pt > c.last {
		c.last = pt
	} else {
		c.last++
	}
	return fmt.Sprintf("%016x", c.last)
}

// observe moves the clock past version: an op's 16 hex digits, or a record version
// (those digits, "/", the writer).
func (c *clock) observe(version string) {
	version, _, _ = strings.Cut(version, "/")
	v, err := strconv.ParseUint(version, 16, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v > c.last {
		c.last = v
	}
}
