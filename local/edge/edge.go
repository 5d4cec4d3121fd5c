// Package edge is the local stack's single front door, like LocalStack's port 4566:
// one HTTP port on 127.0.0.1 that forwards each AWS SDK request to the emulator for
// its service (DynamoDB Local, fauxqs for SNS and SQS, ...). With it, one setting,
// AWS_ENDPOINT_URL=http://127.0.0.1:4566, configures every SDK client, instead of
// one endpoint per service that every program and script must know.
//
// The service is read from the request's SigV4 credential scope, which every signed
// request carries, so routing needs no knowledge of each service's URL layout.
// Unsigned requests fall back to the X-Amz-Target header or the form's Action.
//
// The gateway is also where chaos tests cut a service off: SetFault and SetDelay act
// on one service's requests at a time, the way a network partition or a slow link
// would, while the emulators behind it keep running.
//
// The edge never logs: session data crosses it.
package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HealthPath is answered by the gateway itself (GET only), never forwarded.
const HealthPath = "/_edge/health"

// LocalPrefix starts the paths of the local stack's own endpoints (Handle), which no
// AWS API uses, so they never shadow a request for an emulator.
const LocalPrefix = "/_local/"

// Unroutable is the Stats key counting requests no route matched.
const Unroutable = "unroutable"

// peekLimit bounds how much of an unsigned form body is read to find its Action.
// SDKs put Action first, so this is plenty, and large bodies still stream.
const peekLimit = 16 << 10

// healthTimeout bounds each upstream check of GET /_edge/health.
const healthTimeout = 3 * time.Second

// Fault is a failure injected into one service's requests.
type Fault int

const (
	// FaultNone forwards requests normally.
	FaultNone Fault = iota
	// FaultRefuse answers at once with 503 ServiceUnavailable and an AWS-style error,
	// so SDK retries fail fast, like a service that is up but shedding load.
	FaultRefuse
	// FaultBlackhole holds each request unanswered, like a partition that drops
	// packets, until the client gives up (its context or connection closes), the
	// fault is cleared or the Server closes; then it answers 503. Held requests
	// are never forwarded, even when the fault is cleared.
	FaultBlackhole
	// FaultDrop closes the client's TCP connection with a reset, without a response.
	FaultDrop
)

// String names the fault as the constant does.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "FaultNone"
	case FaultRefuse:
		return "FaultRefuse"
	case FaultBlackhole:
		return "FaultBlackhole"
	case FaultDrop:
		return "FaultDrop"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Gateway routes AWS API requests to emulators by SigV4 service. It is an
// http.Handler; Listen serves it on 127.0.0.1. It is safe for concurrent use, and
// faults and delays may change while requests are in flight.
type Gateway struct {
	routes    map[string]*url.URL
	names     []string // sorted route names, for error messages
	proxies   map[string]*httputil.ReverseProxy
	transport *http.Transport
	counts    map[string]*atomic.Int64 // fixed at New: one per route, plus Unroutable
	holding   atomic.Int64             // requests held by FaultBlackhole now
	// local holds the handlers of Handle, by path; replaced whole on every Handle.
	local atomic.Pointer[map[string]http.Handler]

	mu     sync.RWMutex
	faults map[string]Fault
	delays map[string]time.Duration
	// changed is closed and replaced on every SetFault, to wake blackholed requests.
	changed chan struct{}
}

// discard swallows the standard library's per-request error logs (ReverseProxy,
// http.Server): the edge must not log anything about the traffic it carries.
var discard = log.New(io.Discard, "", 0)

// New returns a Gateway forwarding each service's requests to its base URL, e.g.
// {"dynamodb": "http://127.0.0.1:8000", "sns": fauxqs, "sqs": fauxqs}. Service
// names are SigV4 signing names (DynamoDB Streams signs as "dynamodb"). URLs must
// be absolute http or https URLs without query or fragment; a path is a prefix.
func New(routes map[string]string) (*Gateway, error) {
	if len(routes) == 0 {
		return nil, errors.New("edge: no routes given")
	}
	g := &Gateway{
		routes:  make(map[string]*url.URL, len(routes)),
		proxies: make(map[string]*httputil.ReverseProxy, len(routes)),
		counts:  map[string]*atomic.Int64{Unroutable: new(atomic.Int64)},
		faults:  map[string]Fault{},
		delays:  map[string]time.Duration{},
		changed: make(chan struct{}),
		// One pool for all routes: sns and sqs share fauxqs, and keep-alive
		// connections are what make the extra hop cheap under load.
		transport: &http.Transport{
			Proxy: nil, // emulators are local: never go through $HTTP_PROXY
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Pass Content-Encoding through untouched: DynamoDB's CRC32 is over
			// the bytes as sent, and the client chooses whether to accept gzip.
			DisableCompression: true,
		},
	}
	for svc, raw := range routes {
		if svc == "" || svc != strings.ToLower(svc) || strings.ContainsAny(svc, "/ \t") {
			return nil, fmt.Errorf("edge: bad service name %q: want a lower-case SigV4 signing name such as \"dynamodb\"", svc)
		}
		if svc == Unroutable {
			return nil, fmt.Errorf("edge: %q is reserved for Stats", Unroutable)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("edge: route %s: %w", svc, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			return nil, fmt.Errorf("edge: route %s: %q is not an absolute http(s) URL such as http://127.0.0.1:8000", svc, raw)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("edge: route %s: %q must not have a query, fragment or user info", svc, raw)
		}
		g.routes[svc] = u
		g.proxies[svc] = g.newProxy(svc, u)
		g.counts[svc] = new(atomic.Int64)
		g.names = append(g.names, svc)
	}
	slices.Sort(g.names)
	return g, nil
}

func (g *Gateway) newProxy(svc string, target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the client's Host: fauxqs builds queue URLs from it, and they
			// must point back at the edge. It is also what the client signed.
			pr.Out.Host = pr.In.Host
		},
		Transport:     g.transport,
		FlushInterval: -1, // flush at once, so long polls and streams are not held back
		ErrorLog:      discard,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, r, http.StatusBadGateway, "BadGateway",
				fmt.Sprintf("edge: %s emulator at %s did not answer: %v", svc, target, err))
		},
	}
}

// Handle makes the gateway answer requests for path itself with h, instead of forwarding
// them: the local stack's own endpoints, such as the functions' metrics. path must start
// with LocalPrefix. Handle may be called while the gateway serves; a second handler for
// the same path replaces the first.
func (g *Gateway) Handle(path string, h http.Handler) error {
	if !strings.HasPrefix(path, LocalPrefix) || len(path) == len(LocalPrefix) || h == nil {
		return fmt.Errorf("edge: Handle(%q): want a path under %s and a handler", path, LocalPrefix)
	}
	g.mu.Lock() // serialises writers; readers load the map without a lock
	defer g.mu.Unlock()
	m := map[string]http.Handler{path: h}
	if old := g.local.Load(); old != nil {
		for k, v := range *old {
			if k != path {
				m[k] = v
			}
		}
	}
	g.local.Store(&m)
	return nil
}

// SetFault injects f into service's requests from now on; FaultNone clears it.
// Requests already held by FaultBlackhole are released (with 503) when it is cleared.
func (g *Gateway) SetFault(service string, f Fault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f == FaultNone {
		delete(g.faults, service)
	} else {
		g.faults[service] = f
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// SetDelay adds latency d before each of service's requests is forwarded;
// 0 removes it. Requests refused or held by a fault are not delayed.
func (g *Gateway) SetDelay(service string, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d <= 0 {
		delete(g.delays, service)
	} else {
		g.delays[service] = d
	}
}

// Stats returns how many requests were forwarded to each routed service (whether
// or not the emulator answered), and under "unroutable" how many matched no route.
// Requests stopped by a fault are not counted.
func (g *Gateway) Stats() map[string]int64 {
	m := make(map[string]int64, len(g.counts))
	for k, c := range g.counts {
		m[k] = c.Load()
	}
	return m
}

func (g *Gateway) state(svc string) (Fault, time.Duration, <-chan struct{}) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.faults[svc], g.delays[svc], g.changed
}

// ServeHTTP forwards r to the emulator for its service, or applies that service's fault.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath && r.Method == http.MethodGet {
		g.health(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, LocalPrefix) {
		if m := g.local.Load(); m != nil {
			if h, ok := (*m)[r.URL.Path]; ok {
				h.ServeHTTP(w, r)
				return
			}
		}
	}
	svc := serviceOf(r)
	proxy, ok := g.proxies[svc]
	if !ok {
		g.counts[Unroutable].Add(1)
		var msg string
		if svc == "" {
			msg = fmt.Sprintf("edge: cannot tell which service this request is for: no SigV4 credential scope, X-Amz-Target or form Action (routes: %s)", strings.Join(g.names, ", "))
		} else {
			msg = fmt.Sprintf("edge: no emulator for service %q (routes: %s)", svc, strings.Join(g.names, ", "))
		}
		writeError(w, r, http.StatusBadRequest, "UnknownService", msg)
		return
	}
	fault, delay, _ := g.state(svc)
	switch fault {
	case FaultRefuse:
		writeError(w, r, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge: fault injected: %s refuses requests (FaultRefuse)", svc))
		return
	case FaultBlackhole:
		g.blackhole(w, r, svc)
		return
	case FaultDrop:
		drop(w, r)
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return // the client is gone: nobody to answer
		}
	}
	g.counts[svc].Add(1)
	proxy.ServeHTTP(w, r)
}

// blackhole holds r until its client goes away, the fault is cleared, or the
// Server shuts down (which cancels every request context), then answers 503.
func (g *Gateway) blackhole(w http.ResponseWriter, r *http.Request, svc string) {
	g.holding.Add(1)
	defer g.holding.Add(-1)
	// net/http notices a client hanging up only once the request body has been
	// read to the end, so swallow it: the packets vanish into the hole anyway.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return // the connection broke while the body arrived
	}
hold:
	for {
		fault, _, changed := g.state(svc)
		if fault != FaultBlackhole {
			break
		}
		select {
		case <-r.Context().Done():
			break hold // the answer below then goes nowhere, harmlessly
		case <-changed:
		}
	}
	writeError(w, r, http.StatusServiceUnavailable, "ServiceUnavailable",
		fmt.Sprintf("edge: fault injected: %s request was blackholed (FaultBlackhole)", svc))
}

// drop resets the client's connection without a response, as a crashed peer would.
func drop(w http.ResponseWriter, r *http.Request) {
	// Take the (bounded) body first, so the client is waiting for a response and
	// sees the reset as such rather than as a failed write.
	_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // cannot hijack (HTTP/2): abort the stream instead
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN: "connection reset by peer"
	}
	_ = conn.Close()
}

// health checks that every upstream answers HTTP at all; status codes do not
// matter (DynamoDB Local says 400 to a bare GET).
func (g *Gateway) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results = make(map[string]string, len(g.routes))
		allOK   = true
	)
	for svc, u := range g.routes {
		wg.Go(func() {
			status := "ok"
			if err := g.ping(ctx, u); err != nil {
				status = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			results[svc] = status
			if status != "ok" {
				allOK = false
			}
		})
	}
	wg.Wait()
	code := http.StatusOK
	if !allOK {
		code = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(results)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

func (g *Gateway) ping(ctx context.Context, u *url.URL) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := g.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.Body.Close()
}

// serviceOf names the AWS service r is for, "" if it cannot tell.
func serviceOf(r *http.Request) string {
	if svc := authService(r.Header.Get("Authorization")); svc != "" {
		return svc
	}
	if svc := scopeService(r.URL.Query().Get("X-Amz-Credential")); svc != "" {
		return svc // presigned URL
	}
	// Unsigned requests: JSON protocols name the API in X-Amz-Target...
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		prefix, _, _ := strings.Cut(target, ".")
		switch prefix {
		case "DynamoDB_20120810", "DynamoDBStreams_20120810":
			return "dynamodb" // DynamoDB Local serves streams too; both sign as "dynamodb"
		case "AmazonSQS":
			return "sqs"
		}
		return ""
	}
	// ...and the query protocol puts Action in the form body or the URL.
	form := r.URL.Query()
	if form.Get("Action") == "" {
		form = peekForm(r)
	}
	if action := form.Get("Action"); action != "" {
		return actionService(action, form.Has("QueueUrl"))
	}
	return ""
}

// actionService maps an unsigned query-protocol Action to a service. SNS is the
// default; SQS's query-protocol actions all name a queue or a message (SNS has none
// that do), and STS's AssumeRoleWith* calls are unsigned by design.
func actionService(action string, hasQueueURL bool) string {
	switch {
	case strings.HasPrefix(action, "AssumeRoleWith"):
		return "sts"
	case hasQueueURL || strings.Contains(action, "Queue") || strings.Contains(action, "Message"):
		return "sqs"
	}
	return "sns"
}

// authService reads SERVICE from an Authorization header's
// "Credential=AKID/DATE/REGION/SERVICE/aws4_request" (SigV4A omits REGION).
func authService(auth string) string {
	_, rest, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, ", "); i >= 0 {
		rest = rest[:i]
	}
	return scopeService(rest)
}

// scopeService returns the service of a credential scope ending ".../SERVICE/aws4_request".
func scopeService(cred string) string {
	parts := strings.Split(cred, "/")
	if len(parts) < 4 || parts[len(parts)-1] != "aws4_request" {
		return ""
	}
	return strings.ToLower(parts[len(parts)-2])
}

// peekForm parses the start of a form-encoded body and puts what it read back in
// front of the rest, so the emulator still receives the whole body.
func peekForm(r *http.Request) url.Values {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return nil
	}
	buf := make([]byte, peekLimit)
	n, err := io.ReadFull(r.Body, buf)
	buf = buf[:n]
	r.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), Closer: r.Body}
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil // the read error will surface again when the proxy reads on
	}
	if n == peekLimit {
		// The last pair may be cut short; drop it.
		if i := bytes.LastIndexByte(buf, '&'); i >= 0 {
			buf = buf[:i]
		}
	}
	form, _ := url.ParseQuery(string(buf)) // keeps the pairs that parse
	return form
}

type peekedBody struct {
	io.Reader
	io.Closer
}

// writeError answers in the error format the client's protocol parses: XML for
// query-protocol (form) requests such as SNS, JSON for everything else (DynamoDB,
// SQS), so SDKs report the code and message instead of a deserialization error.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h := w.Header()
	h.Set("X-Amzn-ErrorType", code)
	h.Set("Cache-Control", "no-store")
	if isQueryProtocol(r) {
		type errorXML struct {
			Type    string
			Code    string
			Message string
		}
		kind := "Receiver"
		if status < 500 {
			kind = "Sender"
		}
		body, _ := xml.Marshal(struct {
			XMLName   xml.Name `xml:"ErrorResponse"`
			Error     errorXML
			RequestID string `xml:"RequestId"`
		}{Error: errorXML{Type: kind, Code: code, Message: msg}, RequestID: "edge"})
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		_, _ = w.Write(append([]byte(xml.Header), body...))
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, msg})
	h.Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func isQueryProtocol(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" || r.URL.Query().Has("Action")
}
