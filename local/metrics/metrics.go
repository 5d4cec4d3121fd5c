// Package metrics is the local stack's stand-in for CloudWatch metrics: the functions
// print their counters as CloudWatch embedded-metric-format (EMF) lines, which Lambda's
// log pipeline turns into metrics on AWS; locally a Collector reads the same lines from
// the functions' output and keeps cumulative counters, served as JSON by the edge at
// Path (`sessionctl stats` reads them through SESSIONHA_METRICS_URL). Next to them it
// serves the table's request counts (CountTables), which AWS publishes as AWS/DynamoDB
// metrics: every read of the table, the auth servers' own direct reads included.
//
// Only the lines' metric values are read; every other field of a line (and every line
// that is not EMF) is ignored and never kept, since function logs may carry session data.
package metrics

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"sync"
	"time"
)

// Path is where the edge serves the counters (GET).
const Path = "/_local/metrics"

// Snapshot is the JSON answer at Path: every counter since the collector started, per
// function (the EMF dimension "function") and metric name.
type Snapshot struct {
	// Since is when the collector started (the site's start).
	Since time.Time `json:"since"`
	// At is when the snapshot was taken.
	At time.Time `json:"at"`
	// Namespace is the metrics' CloudWatch namespace ("sessionha").
	Namespace string `json:"namespace"`
	// Functions maps a function (sessionop, sessionquery) to its counters' totals.
	Functions map[string]map[string]float64 `json:"functions"`
	// Lines is how many EMF lines were counted.
	Lines int64 `json:"lines"`
	// Tables maps a table to its successful requests by DynamoDB operation ("GetItem",
	// "PutItem", ...) since the local DynamoDB started: what AWS/DynamoDB's
	// SuccessfulRequestLatency SampleCount by TableName and Operation says on AWS. Empty
	// without CountTables.
	Tables map[string]map[string]float64 `json:"tables"`
}

// Collector is an io.Writer for the functions' output that sums the EMF metrics of the
// namespace it was made for. It is safe for concurrent use.
type Collector struct {
	namespace string
	since     time.Time

	mu      sync.Mutex
	partial []byte // an unterminated line, until its end arrives
	counts  map[string]map[string]float64
	lines   int64
	tables  TableCounts // nil: none
}

// New returns a Collector of namespace's metrics ("sessionha" for the functions).
func New(namespace string) *Collector {
	return &Collector{namespace: namespace, since: time.Now(), counts: map[string]map[string]float64{}}
}

// maxPartial bounds an unterminated line kept between writes; longer ones are dropped
// (EMF lines are a few hundred bytes).
const maxPartial = 1 << 20

// Write takes any number of lines, whole or in pieces. It never fails.
func (c *Collector) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data := p
	if len(c.partial) > 0 {
		data = append(c.partial, p...)
		c.partial = nil
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		c.line(data[:i])
		data = data[i+1:]
	}
	if len(data) > 0 && len(data) <= maxPartial {
		c.partial = append([]byte(nil), data...)
	}
	return len(p), nil
}

// emf is the part of an EMF line the collector reads.
type emf struct {
	AWS *struct {
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name string }
		}
	} `json:"_aws"`
}

// line counts one line, if it is EMF of the collector's namespace. c.mu is held.
func (c *Collector) line(b []byte) {
	if !bytes.Contains(b, []byte(`"_aws"`)) {
		return // cheap: most log lines are not metrics
	}
	var head emf
	if json.Unmarshal(b, &head) != nil || head.AWS == nil {
		return
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return
	}
	counted := false
	for _, d := range head.AWS.CloudWatchMetrics {
		if d.Namespace != c.namespace {
			continue
		}
		fn := "" // the "function" dimension's value; "" for metrics without it
		for _, set := range d.Dimensions {
			for _, dim := range set {
				if dim == "function" {
					_ = json.Unmarshal(fields["function"], &fn)
				}
			}
		}
		for _, m := range d.Metrics {
			var v float64
			if json.Unmarshal(fields[m.Name], &v) != nil {
				continue
			}
			if c.counts[fn] == nil {
				c.counts[fn] = map[string]float64{}
			}
			c.counts[fn][m.Name] += v
			counted = true
		}
	}
	if counted {
		c.lines++
	}
}

// TableCounts returns successful requests by table and DynamoDB operation, as
// local/dynamo's Replica.RequestCounts does.
type TableCounts func() map[string]map[string]int64

// CountTables makes every Snapshot carry the request counts f returns (the site's
// region's local DynamoDB), in Snapshot.Tables.
func (c *Collector) CountTables(f TableCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tables = f
}

// Snapshot returns the totals so far.
func (c *Collector) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{Since: c.since, At: time.Now(), Namespace: c.namespace, Functions: map[string]map[string]float64{},
		Lines: c.lines, Tables: map[string]map[string]float64{}}
	for fn, m := range c.counts {
		s.Functions[fn] = maps.Clone(m)
	}
	if c.tables != nil {
		for table, ops := range c.tables() {
			s.Tables[table] = map[string]float64{}
			for op, n := range ops {
				s.Tables[table][op] = float64(n)
			}
		}
	}
	return s
}

// ServeHTTP answers GET with the Snapshot as JSON.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: GET the metrics", http.StatusMethodNotAllowed)
		return
	}
	b, _ := json.Marshal(c.Snapshot())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
