package edge

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Per-operation counts: what the benchmark turns into AWS's bill. SQS and SNS bill each
// request by 64 KB chunks of its payload (and an empty receive as one request), DynamoDB
// by capacity units, which the bench works out from the item sizes it measures.

// ChunkBytes is SQS's and SNS's billing unit: a request is billed once per 64 KB (KiB)
// of payload.
const ChunkBytes = 64 << 10

// OpCount is what the edge forwarded of one operation of one service.
type OpCount struct {
	Calls int64 // requests forwarded
	// Chunks is, summed over the requests, the larger of the request's and the answer's
	// body in 64 KB chunks, at least one each: SQS's and SNS's billed requests.
	Chunks int64
	// Empty counts answers of at most two bytes ("{}"): an SQS receive that found nothing.
	Empty                       int64
	RequestBytes, ResponseBytes int64
}

type opCounter struct {
	calls, chunks, empty, reqBytes, respBytes atomic.Int64
}

// opCounts holds an opCounter per "service Operation"; the zero value is ready.
type opCounts struct{ m sync.Map }

func (o *opCounts) of(service, op string) *opCounter {
	key := service + " " + op
	if c, ok := o.m.Load(key); ok {
		return c.(*opCounter)
	}
	c, _ := o.m.LoadOrStore(key, &opCounter{})
	return c.(*opCounter)
}

// OpStats returns the counts of every operation forwarded so far, keyed "service
// Operation" ("dynamodb GetItem", "sqs ReceiveMessage", "sns Publish"); "?" names an
// operation the edge could not tell. Like Stats, it counts what was forwarded: requests
// stopped by a fault or refused by an AWS rule are not in it.
func (g *Gateway) OpStats() map[string]OpCount {
	out := map[string]OpCount{}
	g.ops.m.Range(func(k, v any) bool {
		c := v.(*opCounter)
		out[k.(string)] = OpCount{Calls: c.calls.Load(), Chunks: c.chunks.Load(), Empty: c.empty.Load(),
			RequestBytes: c.reqBytes.Load(), ResponseBytes: c.respBytes.Load()}
		return true
	})
	return out
}

// operationOf names r's operation: X-Amz-Target's (JSON protocols: DynamoDB, SQS), or the
// query protocol's Action (SNS), from the URL or the start of the form body.
func operationOf(r *http.Request) string {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		if _, op, ok := strings.Cut(target, "."); ok && op != "" {
			return op
		}
	}
	if a := r.URL.Query().Get("Action"); a != "" {
		return a
	}
	if a := peekForm(r).Get("Action"); a != "" {
		return a
	}
	return "?"
}

// counted forwards r through serve and counts it as op.
func (g *Gateway) counted(w http.ResponseWriter, r *http.Request, service string, serve func(http.ResponseWriter, *http.Request)) {
	c := g.ops.of(service, operationOf(r))
	cw := &countingWriter{ResponseWriter: w}
	serve(cw, r)
	req := max(r.ContentLength, 0)
	c.calls.Add(1)
	c.reqBytes.Add(req)
	c.respBytes.Add(cw.n)
	c.chunks.Add(max(1, (max(req, cw.n)+ChunkBytes-1)/ChunkBytes))
	if cw.n <= 2 {
		c.empty.Add(1)
	}
}

// countingWriter counts the bytes of the answer's body.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController (the proxy's flushes) reach the connection.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
