package dynamo

import (
	"encoding/json"
	"maps"
	"net/http"
	"sync"
)

// Request counts: what CloudWatch's AWS/DynamoDB metrics tell an operator on AWS, where
// SuccessfulRequestLatency (its SampleCount) counts every successful request by
// TableName and Operation, whoever made it: the functions, and the auth servers that read
// the table themselves. The replica keeps the same counts, so that `sessionctl stats`
// reads both the same way (local/metrics serves them next to the functions' counters).
//
// Only requests answered 200 count, as only successful requests have a latency there; a
// batch or a transaction counts once for each table it names, as CloudWatch reports it
// per table. Requests that name no table (ListTables, DescribeLimits, DescribeEndpoints,
// and the tagging operations, which name an ARN) are not counted; nor is what the replica
// does by itself (TTL sweeps, replicated writes), which is no request.

// requestCounts holds a replica's successful requests by table and operation.
type requestCounts struct {
	mu sync.Mutex
	n  map[string]map[string]int64 // table -> operation -> count
}

// tableNames is where a request names its tables.
type tableNames struct {
	TableName     string
	RequestItems  map[string]json.RawMessage // BatchGetItem, BatchWriteItem
	TransactItems []map[string]struct {      // TransactGetItems: Get; TransactWriteItems: Put, Update, Delete, ConditionCheck
		TableName string
	}
}

// count records one successful request of op whose body is body.
func (c *requestCounts) count(op string, status int, body []byte) {
	if status != http.StatusOK {
		return
	}
	var in tableNames
	if json.Unmarshal(body, &in) != nil {
		return
	}
	tables := map[string]bool{}
	if in.TableName != "" {
		tables[in.TableName] = true
	}
	for name := range in.RequestItems {
		tables[name] = true
	}
	for _, item := range in.TransactItems {
		for _, action := range item {
			if action.TableName != "" {
				tables[action.TableName] = true
			}
		}
	}
	if len(tables) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]map[string]int64{}
	}
	for t := range tables {
		if c.n[t] == nil {
			c.n[t] = map[string]int64{}
		}
		c.n[t][op]++
	}
}

// RequestCounts returns the successful requests the replica answered since it started,
// by table and operation ("GetItem", "PutItem", "Query", ...): the local counterpart of
// AWS/DynamoDB SuccessfulRequestLatency's SampleCount by TableName and Operation. The
// maps are the caller's.
func (r *Replica) RequestCounts() map[string]map[string]int64 {
	r.counts.mu.Lock()
	defer r.counts.mu.Unlock()
	out := make(map[string]map[string]int64, len(r.counts.n))
	for t, ops := range r.counts.n {
		out[t] = maps.Clone(ops)
	}
	return out
}
