package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Fault is a failure injected into requests: one service's, one service's in one
// region, or every service's in one region (an outage).
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

// scope is what a fault or delay applies to. An empty service means every service
// (with a region: that region is down); an empty region means every region.
type scope struct{ service, region string }

// scopes lists, strongest first, the scopes that apply to a request for svc in
// region. The precedence, documented on SetRegionFault:
//  1. the region's outage (every service of the region),
//  2. the outage of every region (every service everywhere),
//  3. the service in the region,
//  4. the service in every region.
//
// A request without a region (unsigned, SigV4A) meets 2 and 4 only.
func scopes(svc, region string) []scope {
	if region == "" {
		return []scope{{"", ""}, {svc, ""}}
	}
	return []scope{{"", region}, {"", ""}, {svc, region}, {svc, ""}}
}

// describe names the scope s of a fault met by a request for svc, for error messages.
func (s scope) describe(svc string) string {
	switch {
	case s.service == "" && s.region == "":
		return fmt.Sprintf("every service (an outage of every region; this request: %s)", svc)
	case s.service == "":
		return fmt.Sprintf("every service in %s (an outage of the region; this request: %s)", s.region, svc)
	case s.region == "":
		return svc
	}
	return svc + " in " + s.region
}

// SetFault injects f into service's requests in every region from now on; FaultNone
// clears it. It is SetRegionFault(service, "", f).
func (g *Gateway) SetFault(service string, f Fault) { g.SetRegionFault(service, "", f) }

// SetDelay adds latency d before each of service's requests, in every region, is
// forwarded; 0 removes it. It is SetRegionDelay(service, "", d).
func (g *Gateway) SetDelay(service string, d time.Duration) { g.SetRegionDelay(service, "", d) }

// SetRegionFault injects f into the requests of service signed for region, from now
// on; FaultNone clears that setting (and only it: a fault set for a wider scope still
// applies). An empty region means every region, as SetFault. An empty service means
// every service of the region: the region is down, as when a whole AWS region fails
// ("kill a region"); with both empty, every request the edge routes fails.
//
// When several settings match a request, the region's outage wins, then the outage of
// every region, then the fault of the service in the region, then the fault of the
// service in every region: an outage is an outage whatever a service's own fault,
// and otherwise the most specific setting wins. Requests without a region (unsigned
// or SigV4A) meet only the settings for every region.
//
// Requests held by FaultBlackhole are released (with 503) as soon as the fault that
// applies to them is no longer FaultBlackhole.
func (g *Gateway) SetRegionFault(service, region string, f Fault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := scope{service, region}
	if f == FaultNone {
		delete(g.faults, s)
	} else {
		g.faults[s] = f
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// SetRegionDelay adds latency d before each request of service signed for region is
// forwarded; 0 removes that setting. Empty service and region mean every service and
// every region, as for SetRegionFault, and the same precedence picks the delay that
// applies (delays do not add up). Requests refused or held by a fault are not delayed.
func (g *Gateway) SetRegionDelay(service, region string, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := scope{service, region}
	if d <= 0 {
		delete(g.delays, s)
	} else {
		g.delays[s] = d
	}
}

// state returns the fault that applies to svc in region and the scope it was set
// for, the delay that applies, and a channel closed at the next fault change.
func (g *Gateway) state(svc, region string) (Fault, scope, time.Duration, <-chan struct{}) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var (
		fault Fault
		where scope
		delay time.Duration
	)
	for _, s := range scopes(svc, region) {
		if f, ok := g.faults[s]; ok && fault == FaultNone {
			fault, where = f, s
		}
		if d, ok := g.delays[s]; ok && delay == 0 {
			delay = d
		}
	}
	return fault, where, delay, g.changed
}

// blackhole holds r until its client goes away, the fault is cleared, or the
// Server shuts down (which cancels every request context), then answers 503.
func (g *Gateway) blackhole(w http.ResponseWriter, r *http.Request, svc, region string, where scope) {
	g.holding.Add(1)
	defer g.holding.Add(-1)
	// net/http notices a client hanging up only once the request body has been
	// read to the end, so swallow it: the packets vanish into the hole anyway.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return // the connection broke while the body arrived
	}
hold:
	for {
		fault, _, _, changed := g.state(svc, region)
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
		fmt.Sprintf("edge: fault injected: %s request was blackholed (FaultBlackhole)", where.describe(svc)))
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

// applyFault answers r as fault f demands and reports whether it did (false: FaultNone).
func (g *Gateway) applyFault(w http.ResponseWriter, r *http.Request, f Fault, where scope, svc, region string) bool {
	switch f {
	case FaultRefuse:
		writeError(w, r, http.StatusServiceUnavailable, "ServiceUnavailable",
			fmt.Sprintf("edge: fault injected: %s refuses requests (FaultRefuse)", where.describe(svc)))
	case FaultBlackhole:
		g.blackhole(w, r, svc, region, where)
	case FaultDrop:
		drop(w, r)
	default:
		return false
	}
	return true
}
