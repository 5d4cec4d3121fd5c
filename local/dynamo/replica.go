package dynamo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/truora/minidyn/server"
)

// Options configure a replica; the zero value means the defaults named on each field.
type Options struct {
	// Region names the replica in ARNs and in the changes it makes. Default "us-east-1".
	Region string
	// Account is the account id in ARNs. Default "000000000000".
	Account string
	// TTLPeriod is how often the TTL sweeper runs. Default 10 s (DynamoDB Local's pace;
	// AWS itself deletes within days).
	TTLPeriod time.Duration
	// TTLDelay is the least time an item stays after its TTL before the sweeper deletes
	// it: expired items stay readable meanwhile, as on AWS, so reads must filter them.
	// Default 0 (the next sweep).
	TTLDelay time.Duration
	// Now is the replica's clock. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Account == "" {
		o.Account = "000000000000"
	}
	if o.TTLPeriod == 0 {
		o.TTLPeriod = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Limits of DynamoDB that the engine does not enforce and the layer does.
const (
	// MaxItemSize is DynamoDB's item size limit: 400 KB by its rules (Item.Size).
	MaxItemSize = 400 * 1024
	// MaxPageSize bounds what one Query or Scan returns: 1 MB.
	MaxPageSize = 1 << 20
	// maxRequestSize is DynamoDB's request size limit: 16 MB.
	maxRequestSize = 16 << 20
)

// Replica is one region's DynamoDB: every table of that region, served as DynamoDB's
// JSON API over HTTP (an http.Handler; Listen serves it on 127.0.0.1). It is safe for
// concurrent use. Close stops its TTL sweeper.
type Replica struct {
	o      Options
	engine *server.Server

	// mu is held exclusively by table operations and by the writes the layer may have to
	// undo (an UpdateItem or a transaction that made an item too large), shared by all
	// others: the engine does not lock its table list itself.
	mu     sync.RWMutex
	tables map[string]*table

	// wmu serialises item writes, so that each is captured with its before and after
	// images, in order, and replicated writes apply in between.
	wmu    sync.Mutex
	seq    uint64                      // under wmu
	stamps map[string]map[string]stamp // table -> key -> last write; under wmu

	smu     sync.Mutex
	subs    map[int]func(Change)
	nextSub int

	requests  atomic.Int64
	counts    requestCounts // successful requests by table and operation (requests.go)
	stop      chan struct{}
	sweepDone chan struct{}
	closeOnce sync.Once
}

// New returns a replica with no tables, its TTL sweeper running until Close.
func New(o Options) *Replica {
	r := &Replica{
		o: o.withDefaults(), engine: server.NewServer(), tables: map[string]*table{},
		stamps: map[string]map[string]stamp{}, subs: map[int]func(Change){},
		stop: make(chan struct{}), sweepDone: make(chan struct{}),
	}
	go r.sweeper()
	return r
}

// Region is the replica's region.
func (r *Replica) Region() string { return r.o.Region }

// Requests counts the API requests the replica has answered.
func (r *Replica) Requests() int64 { return r.requests.Load() }

// Close stops the TTL sweeper. The replica keeps answering requests.
func (r *Replica) Close() {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.sweepDone
	})
}

// Sweep runs the TTL sweeper now and returns how many items it deleted.
func (r *Replica) Sweep() int { return r.sweep() }

const targetPrefix = "DynamoDB_20120810."

// ServeHTTP answers one DynamoDB API request.
func (r *Replica) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	if req.Method == http.MethodGet && req.URL.Path == "/" {
		// DynamoDB answers a bare GET with its health line; so do we (load balancers ask).
		writeRaw(w, http.StatusOK, "text/plain", []byte("healthy: dynamodb."+r.o.Region+".amazonaws.com "))
		return
	}
	if req.Method != http.MethodPost {
		st, v := apiError(http.StatusMethodNotAllowed, "com.amazon.coral.service#UnknownOperationException",
			"DynamoDB's API takes POST requests")
		writeJSON(w, st, v)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxRequestSize+1))
	if err != nil {
		st, v := apiError(http.StatusBadRequest, "com.amazon.coral.service#SerializationException", "could not read the request: "+err.Error())
		writeJSON(w, st, v)
		return
	}
	if len(body) > maxRequestSize {
		st, v := apiError(http.StatusRequestEntityTooLarge, "com.amazon.coral.service#RequestEntityTooLarge",
			"Request size exceeded 16 MB")
		writeJSON(w, st, v)
		return
	}
	target := req.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if !ok {
		st, v := apiError(http.StatusBadRequest, "com.amazon.coral.service#UnknownOperationException",
			fmt.Sprintf("unknown operation %q: the X-Amz-Target header must name a DynamoDB_20120810 operation", target))
		writeJSON(w, st, v)
		return
	}
	// Labelled, so that a CPU profile of a process running replicas (the local stack, the
	// benchmark) can tell the emulator's share from the rest.
	pprof.Do(req.Context(), profileLabels, func(context.Context) {
		st, v := r.handle(op, body)
		r.counts.count(op, st, body)
		writeJSON(w, st, v)
	})
}

// ProfileLabel is the pprof label (key "component") on every goroutine while it serves
// a DynamoDB request.
const ProfileLabel = "dynamodb"

var profileLabels = pprof.Labels("component", ProfileLabel)

// handle runs one operation: the engine's, completed by the layer, or the layer's own.
func (r *Replica) handle(op string, body []byte) (int, any) {
	switch op {
	case "CreateTable", "DeleteTable", "UpdateTable":
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.tableOp(op, body)
	case "UpdateTimeToLive", "TagResource", "UntagResource":
		r.mu.Lock()
		defer r.mu.Unlock()
		switch op {
		case "UpdateTimeToLive":
			r.wmu.Lock() // the expiry index is the writers'
			defer r.wmu.Unlock()
			return r.updateTTL(body)
		case "TagResource":
			return r.tagResource(body)
		}
		return r.untagResource(body)
	case "UpdateItem", "BatchWriteItem", "TransactWriteItems":
		r.mu.Lock() // a write the layer undoes must not be seen by readers meanwhile
		defer r.mu.Unlock()
		r.wmu.Lock()
		defer r.wmu.Unlock()
		return r.write(op, body)
	case "PutItem", "DeleteItem":
		r.mu.RLock()
		defer r.mu.RUnlock()
		r.wmu.Lock()
		defer r.wmu.Unlock()
		return r.write(op, body)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	switch op {
	case "GetItem", "BatchGetItem", "TransactGetItems":
		return r.engine1(op, body)
	case "Query", "Scan":
		return r.search(op, body)
	case "DescribeTable":
		return r.describeTable(body)
	case "ListTables":
		return r.listTables(body)
	case "DescribeTimeToLive":
		return r.describeTTL(body)
	case "ListTagsOfResource":
		return r.listTags(body)
	case "DescribeLimits":
		return http.StatusOK, map[string]any{"AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
			"TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000}
	case "DescribeEndpoints":
		return http.StatusOK, map[string]any{"Endpoints": []any{map[string]any{
			"Address": "dynamodb." + r.o.Region + ".amazonaws.com", "CachePeriodInMinutes": 1440}}}
	}
	return apiError(http.StatusBadRequest, "com.amazon.coral.service#UnknownOperationException",
		fmt.Sprintf("the local DynamoDB does not implement %s", op))
}

// tableOp runs CreateTable, DeleteTable or UpdateTable and keeps the layer's record of
// the table in step. The caller holds mu exclusively.
func (r *Replica) tableOp(op string, body []byte) (int, any) {
	var in struct{ TableName string }
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	var t *table
	if op != "CreateTable" {
		var st int
		var e any
		if t, st, e = r.tableByName(in.TableName); t == nil {
			return st, e
		}
		if op == "DeleteTable" && !t.deletable {
			return apiError(http.StatusBadRequest, "com.amazonaws.dynamodb.v20120810#ResourceInUseException",
				"Table "+t.name+" can't be deleted while DeletionProtectionEnabled is set to True")
		}
	}
	st, resp := r.engine1(op, body)
	if st != http.StatusOK {
		return st, resp
	}
	switch op {
	case "CreateTable":
		if err := r.noteCreated(body); err != nil {
			return serializationError(err)
		}
		t = r.tables[in.TableName]
	case "DeleteTable":
		r.wmu.Lock()
		delete(r.tables, t.name)
		delete(r.stamps, t.name)
		r.wmu.Unlock()
	case "UpdateTable":
		r.noteUpdated(t, body)
	}
	return http.StatusOK, r.withDescription(resp.(json.RawMessage), t, "TableDescription")
}

func (r *Replica) describeTable(body []byte) (int, any) {
	var in struct{ TableName string }
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	t, st, e := r.tableByName(in.TableName)
	if t == nil {
		return st, e
	}
	st, resp := r.engine1("DescribeTable", body)
	if st != http.StatusOK {
		return st, resp
	}
	return http.StatusOK, r.withDescription(resp.(json.RawMessage), t, "Table")
}

// withDescription completes the table description under field of an engine answer.
func (r *Replica) withDescription(resp json.RawMessage, t *table, field string) any {
	var out map[string]json.RawMessage
	if json.Unmarshal(resp, &out) != nil {
		return resp
	}
	out[field] = r.describe(t, out[field])
	return out
}

// engine1 passes one request to the engine and returns its answer as it is: the status
// and the body (json.RawMessage) of an answer or of an error.
func (r *Replica) engine1(op string, body []byte) (int, any) {
	req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	rec := &recorder{h: http.Header{}}
	r.engine.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	b := bytes.TrimSpace(rec.buf.Bytes())
	if !json.Valid(b) {
		return apiError(http.StatusInternalServerError, "com.amazonaws.dynamodb.v20120810#InternalServerError",
			fmt.Sprintf("the engine gave a %d answer that is not JSON: %q", rec.status, truncate(b, 200)))
	}
	return rec.status, json.RawMessage(b)
}

// engineCall runs an operation on the engine for the layer itself, decoding the answer
// into out (nil to ignore it).
func (r *Replica) engineCall(op string, in any, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	st, resp := r.engine1(op, body)
	raw, _ := resp.(json.RawMessage)
	if st != http.StatusOK {
		return fmt.Errorf("engine %s: %d %s", op, st, truncate(raw, 300))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// getItem reads an item for the layer: nil if there is none.
func (r *Replica) getItem(table string, key Item) (Item, error) {
	var out struct{ Item Item }
	if err := r.engineCall("GetItem", map[string]any{"TableName": table, "Key": key, "ConsistentRead": true}, &out); err != nil {
		return nil, err
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return out.Item, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// recorder is the engine's ResponseWriter: the layer reads the whole answer before it
// answers the client (with a Content-Length and a checksum).
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

var requestIDs atomic.Uint64

// writeJSON answers as DynamoDB does: JSON with a Content-Length (never chunked) and the
// CRC32 of the body in X-Amz-Crc32, which the SDK checks.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	switch x := v.(type) {
	case json.RawMessage:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			status = http.StatusInternalServerError
			b = []byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"could not encode the answer"}`)
		}
	}
	writeRaw(w, status, "application/x-amz-json-1.0", b)
}

func writeRaw(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
	h.Set("X-Amzn-Requestid", fmt.Sprintf("LOCAL%027d", requestIDs.Add(1)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// apiError is an error answer in DynamoDB's JSON.
func apiError(status int, typ, msg string) (int, any) {
	return status, map[string]string{"__type": typ, "message": msg}
}

func validationError(msg string) (int, any) {
	return apiError(http.StatusBadRequest, "com.amazon.coral.validate#ValidationException", msg)
}

func serializationError(err error) (int, any) {
	return apiError(http.StatusBadRequest, "com.amazon.coral.service#SerializationException", err.Error())
}
