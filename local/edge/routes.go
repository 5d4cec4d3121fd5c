package edge

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
)

// Route sends the requests of one service, in one region or in every region, to an
// emulator. A regional route wins over its service's service-wide route, so that
// {dynamodb, eu-west-1} and {dynamodb, us-east-1} reach one replica each while
// {sns, ""} serves SNS in every region.
type Route struct {
	// Service is the SigV4 signing name, e.g. "dynamodb" (DynamoDB Streams signs as
	// "dynamodb" too). Required.
	Service string
	// Region is the SigV4 region, e.g. "eu-west-1". Default "": every region, and
	// requests without one (unsigned, SigV4A).
	Region string
	// URL is the emulator's base URL: absolute http(s), without query or fragment; a
	// path is a prefix. Required.
	URL string
}

// String names the route as Stats, health and error messages do: "dynamodb" for a
// service-wide route, "dynamodb/eu-west-1" for a regional one.
func (r Route) String() string {
	if r.Region == "" {
		return r.Service
	}
	return r.Service + "/" + r.Region
}

type routeKey struct{ service, region string }

// route is a Route ready to forward to.
type route struct {
	Route
	target *url.URL
	proxy  *httputil.ReverseProxy
	count  atomic.Int64 // requests forwarded through this route
	total  *atomic.Int64
}

// validate checks a route as New and NewGateway take it.
func (r Route) validate() (*url.URL, error) {
	if !signingName(r.Service) {
		return nil, fmt.Errorf("edge: bad service name %q: want a lower-case SigV4 signing name such as \"dynamodb\"", r.Service)
	}
	if r.Service == Unroutable {
		return nil, fmt.Errorf("edge: %q is reserved for Stats", Unroutable)
	}
	if r.Region != "" && !signingName(r.Region) {
		return nil, fmt.Errorf("edge: route %s: bad region %q: want a lower-case AWS region such as \"eu-west-1\"", r, r.Region)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, fmt.Errorf("edge: route %s: %w", r, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("edge: route %s: %q is not an absolute http(s) URL such as http://127.0.0.1:8000", r, r.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("edge: route %s: %q must not have a query, fragment or user info", r, r.URL)
	}
	return u, nil
}

// signingName reports whether s looks like a SigV4 service or region name.
func signingName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

// lookup finds the route for a service in a region: the regional route, else the
// service-wide one. It returns nil and an AWS-style error code and message if none.
func (g *Gateway) lookup(svc, region string) (*route, string, string) {
	if region != "" {
		if rt := g.routes[routeKey{svc, region}]; rt != nil {
			return rt, "", ""
		}
	}
	if rt := g.routes[routeKey{svc, ""}]; rt != nil {
		return rt, "", ""
	}
	list := strings.Join(g.names, ", ")
	switch {
	case svc == "":
		return nil, "UnknownService", fmt.Sprintf("edge: cannot tell which service this request is for: no SigV4 credential scope, X-Amz-Target or form Action (routes: %s)", list)
	case g.totals[svc] == nil:
		return nil, "UnknownService", fmt.Sprintf("edge: no emulator for service %q (routes: %s)", svc, list)
	case region == "":
		return nil, "UnknownRegion", fmt.Sprintf("edge: no emulator for service %q without a region (the request is unsigned or SigV4A, and %s has regional routes only) (routes: %s)", svc, svc, list)
	}
	return nil, "UnknownRegion", fmt.Sprintf("edge: no emulator for service %q in region %q (routes: %s)", svc, region, list)
}

func (g *Gateway) newProxy(rt *route) *httputil.ReverseProxy {
	what := rt.Service
	if rt.Region != "" {
		what += " for " + rt.Region
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rt.target)
			// Keep the client's Host: fauxqs builds queue URLs from it, and they
			// must point back at the edge. It is also what the client signed.
			pr.Out.Host = pr.In.Host
		},
		Transport:     g.transport,
		FlushInterval: -1, // flush at once, so long polls and streams are not held back
		ErrorLog:      discard,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, r, http.StatusBadGateway, "BadGateway",
				fmt.Sprintf("edge: %s emulator at %s did not answer: %v", what, rt.target, err))
		},
	}
}

// forward sends r to rt's emulator and counts it, by route and by operation (ops.go).
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, rt *route) {
	rt.count.Add(1)
	rt.total.Add(1)
	g.counted(w, r, rt.Service, rt.proxy.ServeHTTP)
}
