// Package batch runs the records of an SQS batch the way every sessionha function does:
// several at once, each failing alone (a panic included) into batchItemFailures, so that
// the queue delivers only the failed ones again and, after maxReceiveCount, moves them to
// the DLQ; and it writes the batch's counters as one CloudWatch embedded-metric-format
// line, which Lambda's log pipeline turns into metrics without an API call.
package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
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

// Run calls apply for every record, at most parallel at once, and reports the records
// whose apply failed or panicked. It never fails the batch as a whole.
func Run(ctx context.Context, ev events.SQSEvent, parallel int, apply func(context.Context, *events.SQSMessage) error) events.SQSEventResponse {
	var (
		resp events.SQSEventResponse
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, max(parallel, 1))
	)
	for i := range ev.Records {
		rec := &ev.Records[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := safely(ctx, rec, apply); err != nil {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp
}

func safely(ctx context.Context, rec *events.SQSMessage, apply func(context.Context, *events.SQSMessage) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return apply(ctx, rec)
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
