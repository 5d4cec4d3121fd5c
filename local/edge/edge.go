// Package edge is the local stack's single front door, like LocalStack's port 4566:
// one HTTP port on 127.0.0.1 that forwards each AWS SDK request to the emulator for
// its service and region (a DynamoDB replica per region, fauxqs for SNS and SQS in
// every region, ...). With it, one setting, AWS_ENDPOINT_URL=http://127.0.0.1:4566,
// configures every SDK client, instead of one endpoint per service that every program
// and script must know.
//
// The service and region are read from the request's SigV4 credential scope
// (AKID/DATE/REGION/SERVICE/aws4_request), which every signed request carries, so
// routing needs no knowledge of each service's URL layout. A Route names a service and
// optionally a region; a regional route wins over its service's service-wide one.
// Unsigned requests fall back to the X-Amz-Target header or the form's Action, and
// have no region, as SigV4A requests have none: they take service-wide routes.
//
// The gateway is also where chaos tests cut a service off: SetFault and SetDelay act
// on one service's requests, SetRegionFault and SetRegionDelay on one service in one
// region or on a whole region, the way a network partition, a slow link or a regional
// outage would, while the emulators behind it keep running.
//
// With EnforceAWSRules on, it also holds clients to rules of SQS and SNS that fauxqs
// does not enforce (queue name reuse, purge interval and purge window, message sizes;
// see rules.go), so that tests meet them before users do on AWS.
//
// The edge never logs: session data crosses it.
package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
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

// healthTimeout bounds each upstream check of GET /_edge/health.
const healthTimeout = 3 * time.Second

// Options configure a Gateway; the zero value of each field means the default its
// comment names.
type Options struct {
	// Routes say where each service's requests go, by region. Required: at least one.
	// No two may name the same service and region.
	Routes []Route
	// EnforceAWSRules turns the AWS rules of rules.go on from the start (see
	// Gateway.EnforceAWSRules). Default false.
	EnforceAWSRules bool
	// Now is the clock of the rules' time windows (60 s between a queue's deletion and
	// its re-creation, between two purges, and after a purge), so that tests can move
	// through them without waiting. Default time.Now.
	Now func() time.Time
}

// Gateway routes AWS API requests to emulators by SigV4 service and region. It is an
// http.Handler; Listen serves it on 127.0.0.1. It is safe for concurrent use, and
// faults, delays and the rules switch may change while requests are in flight.
type Gateway struct {
	routes     map[routeKey]*route // fixed at New
	order      []*route            // routes sorted by name
	names      []string            // sorted route names, for error messages
	totals     map[string]*atomic.Int64
	unroutable atomic.Int64
	ops        opCounts // by service and operation (ops.go)
	transport  *http.Transport
	holding    atomic.Int64 // requests held by FaultBlackhole now
	rules      *rules
	// local holds the handlers of Handle, by path; replaced whole on every Handle.
	local atomic.Pointer[map[string]http.Handler]

	mu     sync.RWMutex
	faults map[scope]Fault
	delays map[scope]time.Duration
	// changed is closed and replaced on every fault change, to wake blackholed requests.
	changed chan struct{}
}

// discard swallows the standard library's per-request error logs (ReverseProxy,
// http.Server): the edge must not log anything about the traffic it carries.
var discard = log.New(io.Discard, "", 0)

// New returns a Gateway forwarding each service's requests, in every region, to its
// base URL, e.g. {"dynamodb": "http://127.0.0.1:8000", "sns": fauxqs, "sqs": fauxqs}.
// Service names are SigV4 signing names (DynamoDB Streams signs as "dynamodb"). URLs
// must be absolute http or https URLs without query or fragment; a path is a prefix.
// For routes by region, or the AWS rules, use NewGateway.
func New(routes map[string]string) (*Gateway, error) {
	o := Options{}
	for _, svc := range slices.Sorted(maps.Keys(routes)) {
		o.Routes = append(o.Routes, Route{Service: svc, URL: routes[svc]})
	}
	return NewGateway(o)
}

// NewGateway returns a Gateway for o, which it validates.
func NewGateway(o Options) (*Gateway, error) {
	if len(o.Routes) == 0 {
		return nil, errors.New("edge: no routes given")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Gateway{
		routes:  make(map[routeKey]*route, len(o.Routes)),
		totals:  map[string]*atomic.Int64{},
		rules:   newRules(o.Now),
		faults:  map[scope]Fault{},
		delays:  map[scope]time.Duration{},
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
	for _, r := range o.Routes {
		u, err := r.validate()
		if err != nil {
			return nil, err
		}
		k := routeKey{r.Service, r.Region}
		if g.routes[k] != nil {
			return nil, fmt.Errorf("edge: route %s given twice", r)
		}
		if g.totals[r.Service] == nil {
			g.totals[r.Service] = new(atomic.Int64)
		}
		rt := &route{Route: r, target: u, total: g.totals[r.Service]}
		rt.proxy = g.newProxy(rt)
		g.routes[k] = rt
		g.order = append(g.order, rt)
	}
	slices.SortFunc(g.order, func(a, b *route) int { return strings.Compare(a.String(), b.String()) })
	for _, rt := range g.order {
		g.names = append(g.names, rt.String())
	}
	g.rules.on.Store(o.EnforceAWSRules)
	return g, nil
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

// Stats returns how many requests were forwarded (whether or not the emulator
// answered): under each service's name, every request of that service through any of
// its routes; under each regional route's name ("dynamodb/eu-west-1"), those through
// that route (a service-wide route's own count is its service's total less its
// regional routes'); and under Unroutable, how many matched no route. Requests stopped
// by a fault or refused by an AWS rule are not counted.
func (g *Gateway) Stats() map[string]int64 {
	m := make(map[string]int64, len(g.totals)+len(g.order)+1)
	for svc, c := range g.totals {
		m[svc] = c.Load()
	}
	for _, rt := range g.order {
		if rt.Region != "" {
			m[rt.String()] = rt.count.Load()
		}
	}
	m[Unroutable] = g.unroutable.Load()
	return m
}

// ServeHTTP forwards r to the emulator for its service and region, or applies the
// fault set for them, or answers an AWS rule's error.
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
	svc, region := scopeOf(r)
	rt, code, msg := g.lookup(svc, region)
	if rt == nil {
		g.unroutable.Add(1)
		writeError(w, r, http.StatusBadRequest, code, msg)
		return
	}
	fault, where, delay, _ := g.state(svc, region)
	if g.applyFault(w, r, fault, where, svc, region) {
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
	if g.rules.on.Load() && (svc == "sqs" || svc == "sns") {
		g.serveWithRules(w, r, rt, svc, region)
		return
	}
	g.forward(w, r, rt)
}

// health checks that every upstream answers HTTP at all; status codes do not
// matter (an emulator may say 400 to a bare GET). Results are keyed by route name.
func (g *Gateway) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results = make(map[string]string, len(g.order))
		allOK   = true
	)
	for _, rt := range g.order {
		wg.Go(func() {
			status := "ok"
			if err := g.ping(ctx, rt.target); err != nil {
				status = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			results[rt.String()] = status
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
