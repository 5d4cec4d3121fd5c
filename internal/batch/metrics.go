package batch

import (
	"encoding/json"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Counters are a batch's named counts; safe for concurrent use.
type Counters struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

// Add adds n to the counter name.
func (c *Counters) Add(name string, n int64) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*atomic.Int64{}
	}
	v, ok := c.m[name]
	if !ok {
		v = &atomic.Int64{}
		c.m[name] = v
	}
	c.mu.Unlock()
	v.Add(n)
}

// Get returns the counter name.
func (c *Counters) Get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[name]; ok {
		return v.Load()
	}
	return 0
}

// Emit writes c as one EMF line to w: namespace "sessionha", dimension "function".
// names fixes which counters are published (absent ones as 0) and their order.
func Emit(w io.Writer, function string, c *Counters, names ...string) {
	metrics := make([]map[string]string, len(names))
	line := map[string]any{"function": function}
	for i, n := range slices.Clone(names) {
		metrics[i] = map[string]string{"Name": n, "Unit": "Count"}
		line[n] = c.Get(n)
	}
	line["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": "sessionha", "Dimensions": [][]string{{"function"}}, "Metrics": metrics,
		}},
	}
	b, _ := json.Marshal(line)
	_, _ = w.Write(append(b, '\n'))
}
