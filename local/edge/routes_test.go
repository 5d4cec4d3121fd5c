package edge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/local/dynamo"
)

// upstream is a fake emulator that records the SigV4 region of every request it gets.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	regions []string // "" for an unsigned request
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, region := scopeOf(r)
		u.mu.Lock()
		u.regions = append(u.regions, region)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"TableNames":[]}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) got() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.regions)
}

// serve starts g on a free port, closed when the test ends.
func serve(t *testing.T, g *Gateway) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// signed sends a POST carrying a SigV4 credential scope for service in region
// (region "" for an unsigned request, routed by its X-Amz-Target) and returns status and body.
func signed(t *testing.T, s *Server, service, region string) (int, string) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables"}
	if region != "" {
		h["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20250101/" + region + "/" + service +
			"/aws4_request, SignedHeaders=host, Signature=00"
	}
	return rawRequest(t, "POST", s.URL()+"/", h, "{}")
}

func ddbIn(s *Server, region string) *dynamodb.Client {
	return dynamodb.NewFromConfig(aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(s.URL()); o.RetryMaxAttempts = 1 })
}

// Each region's DynamoDB requests reach that region's emulator; SNS of any region
// reaches the one service-wide route; Stats counts per route and per service.
func TestRegionRouting(t *testing.T) {
	eu, us, bus := newUpstream(t), newUpstream(t), newUpstream(t)
	g, err := NewGateway(Options{Routes: []Route{
		{Service: "dynamodb", Region: "eu-west-1", URL: eu.URL},
		{Service: "dynamodb", Region: "us-east-1", URL: us.URL},
		{Service: "sns", URL: bus.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)

	// Real SDK clients, one per region, configured only with the edge's URL.
	for _, region := range []string{"eu-west-1", "us-east-1", "eu-west-1"} {
		if _, err := ddbIn(s, region).ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
			t.Fatalf("ListTables in %s: %v", region, err)
		}
	}
	for _, region := range []string{"eu-west-1", "us-east-1", "ap-south-1"} {
		if code, body := signed(t, s, "sns", region); code != http.StatusOK {
			t.Fatalf("sns in %s: %d %s", region, code, body)
		}
	}
	if got := eu.got(); !slices.Equal(got, []string{"eu-west-1", "eu-west-1"}) {
		t.Errorf("eu-west-1 emulator got requests for %v, want two for eu-west-1", got)
	}
	if got := us.got(); !slices.Equal(got, []string{"us-east-1"}) {
		t.Errorf("us-east-1 emulator got requests for %v, want one for us-east-1", got)
	}
	if got := bus.got(); !slices.Equal(got, []string{"eu-west-1", "us-east-1", "ap-south-1"}) {
		t.Errorf("sns emulator got requests for %v, want one per region", got)
	}
	st := g.Stats()
	want := map[string]int64{"dynamodb": 3, "dynamodb/eu-west-1": 2, "dynamodb/us-east-1": 1, "sns": 3, Unroutable: 0}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("Stats()[%q] = %d, want %d (all: %v)", k, st[k], v, st)
		}
	}
	if len(st) != len(want) {
		t.Errorf("Stats() = %v, want exactly the keys of %v", st, want)
	}
}

// A region without a route, or a request without a region where a service has
// regional routes only, gets an AWS-style error naming service, region and routes.
func TestRegionUnknown(t *testing.T) {
	eu, bus := newUpstream(t), newUpstream(t)
	g, err := NewGateway(Options{Routes: []Route{
		{Service: "dynamodb", Region: "eu-west-1", URL: eu.URL},
		{Service: "sqs", URL: bus.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)

	_, err = ddbIn(s, "ap-south-1").ListTables(ctxT(t), &dynamodb.ListTablesInput{})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || statusOf(err) != http.StatusBadRequest || apiErr.ErrorCode() != "UnknownRegion" {
		t.Fatalf("ListTables in a region without a route: got %v, want 400 UnknownRegion", err)
	}
	want := `edge: no emulator for service "dynamodb" in region "ap-south-1" (routes: dynamodb/eu-west-1, sqs)`
	if apiErr.ErrorMessage() != want {
		t.Errorf("message = %q, want %q", apiErr.ErrorMessage(), want)
	}

	code, body := signed(t, s, "dynamodb", "") // unsigned: no region
	if code != http.StatusBadRequest || !strings.Contains(body, "UnknownRegion") || !strings.Contains(body, "without a region") {
		t.Errorf("unsigned DynamoDB request with regional routes only: got %d %s, want 400 UnknownRegion saying it has no region", code, body)
	}
	if len(eu.got()) != 0 {
		t.Errorf("the eu-west-1 emulator got %v, want nothing", eu.got())
	}
	if st := g.Stats(); st[Unroutable] != 2 || st["dynamodb"] != 0 {
		t.Errorf("Stats() = %v, want 2 unroutable and no dynamodb forwarded", st)
	}
}

// A regional route wins over its service's service-wide route, which serves the other
// regions and requests without a region.
func TestRegionalRouteWins(t *testing.T) {
	eu, rest := newUpstream(t), newUpstream(t)
	g, err := NewGateway(Options{Routes: []Route{
		{Service: "dynamodb", URL: rest.URL},
		{Service: "dynamodb", Region: "eu-west-1", URL: eu.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	for _, region := range []string{"eu-west-1", "us-east-1", ""} {
		if code, body := signed(t, s, "dynamodb", region); code != http.StatusOK {
			t.Fatalf("dynamodb in %q: %d %s", region, code, body)
		}
	}
	if got := eu.got(); !slices.Equal(got, []string{"eu-west-1"}) {
		t.Errorf("eu-west-1 route got %v, want only eu-west-1", got)
	}
	if got := rest.got(); !slices.Equal(got, []string{"us-east-1", ""}) {
		t.Errorf("service-wide route got %v, want us-east-1 and the unsigned request", got)
	}
	if st := g.Stats(); st["dynamodb"] != 3 || st["dynamodb/eu-west-1"] != 1 {
		t.Errorf("Stats() = %v, want dynamodb 3 (all routes) and dynamodb/eu-west-1 1", st)
	}
	code, body := rawRequest(t, "GET", s.URL()+HealthPath, nil, "")
	var h map[string]string
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusOK || len(h) != 2 || h["dynamodb"] != "ok" || h["dynamodb/eu-west-1"] != "ok" {
		t.Errorf("health: %d %s, want 200 with dynamodb and dynamodb/eu-west-1 ok", code, body)
	}
}

// Two real DynamoDB replicas behind one edge: a table made in one region is not in
// the other, as with two regions' tables before replication.
func TestRegionRoutingReplicas(t *testing.T) {
	ctx := ctxT(t)
	urls := map[string]string{}
	for _, region := range []string{"eu-west-1", "us-east-1"} {
		r := dynamo.New(dynamo.Options{Region: region})
		t.Cleanup(r.Close)
		ls, err := r.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ls.Close() })
		urls[region] = ls.URL()
	}
	g, err := NewGateway(Options{Routes: []Route{
		{Service: "dynamodb", Region: "eu-west-1", URL: urls["eu-west-1"]},
		{Service: "dynamodb", Region: "us-east-1", URL: urls["us-east-1"]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	eu, us := ddbIn(s, "eu-west-1"), ddbIn(s, "us-east-1")
	table := uniq("regional")
	_, err = eu.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable in eu-west-1: %v", err)
	}
	d, err := eu.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil || !strings.Contains(aws.ToString(d.Table.TableArn), ":eu-west-1:") {
		t.Fatalf("DescribeTable in eu-west-1: %v, %v; want the table, with an eu-west-1 ARN", d, err)
	}
	lt, err := us.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables in us-east-1: %v", err)
	}
	if slices.Contains(lt.TableNames, table) {
		t.Fatalf("us-east-1 lists %s, made in eu-west-1 only: both regions reached one replica", table)
	}
}

// waitHeld waits until g holds n requests in blackholes.
func waitHeld(t *testing.T, g *Gateway, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.holding.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests held by the blackhole, want %d", g.holding.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Faults by service and region, and a region's outage, with their precedence.
func TestRegionFaults(t *testing.T) {
	eu, us, bus := newUpstream(t), newUpstream(t), newUpstream(t)
	g, err := NewGateway(Options{Routes: []Route{
		{Service: "dynamodb", Region: "eu-west-1", URL: eu.URL},
		{Service: "dynamodb", Region: "us-east-1", URL: us.URL},
		{Service: "dynamodb", URL: bus.URL}, // for unsigned requests
		{Service: "sns", URL: bus.URL},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	expect := func(what string, want map[[2]string]int) {
		t.Helper()
		for k, code := range want {
			if got, body := signed(t, s, k[0], k[1]); got != code {
				t.Errorf("%s: %s in %q answered %d %s, want %d", what, k[0], k[1], got, body, code)
			}
		}
	}
	const ok, refused = http.StatusOK, http.StatusServiceUnavailable

	// One service in one region.
	g.SetRegionFault("dynamodb", "eu-west-1", FaultRefuse)
	code, body := signed(t, s, "dynamodb", "eu-west-1")
	if code != refused || !strings.Contains(body, "dynamodb in eu-west-1 refuses requests") {
		t.Errorf("dynamodb in eu-west-1 refused: got %d %s, want 503 naming dynamodb in eu-west-1", code, body)
	}
	expect("dynamodb refused in eu-west-1", map[[2]string]int{
		{"dynamodb", "us-east-1"}: ok, {"sns", "eu-west-1"}: ok, {"dynamodb", ""}: ok,
	})
	g.SetRegionFault("dynamodb", "eu-west-1", FaultNone)

	// The region is down: every service of it, not the others, not unsigned requests.
	g.SetRegionFault("", "eu-west-1", FaultRefuse)
	code, body = signed(t, s, "sns", "eu-west-1")
	if code != refused || !strings.Contains(body, "every service in eu-west-1") || !strings.Contains(body, "sns") {
		t.Errorf("sns in a downed eu-west-1: got %d %s, want 503 naming the region's outage and sns", code, body)
	}
	expect("eu-west-1 down", map[[2]string]int{
		{"dynamodb", "eu-west-1"}: refused, {"dynamodb", "us-east-1"}: ok, {"sns", "us-east-1"}: ok, {"dynamodb", ""}: ok,
	})

	// The outage wins over a service's own fault in the region, whichever came first.
	g.SetRegionFault("dynamodb", "eu-west-1", FaultDrop)
	expect("outage over a service fault", map[[2]string]int{{"dynamodb", "eu-west-1"}: refused})
	g.SetRegionFault("", "eu-west-1", FaultNone)
	// Cleared: the service's fault applies again (a dropped connection: no status).
	req, _ := http.NewRequestWithContext(ctxT(t), "POST", s.URL()+"/", strings.NewReader("{}"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20250101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("dynamodb in eu-west-1 under FaultDrop answered %d, want a reset connection", resp.StatusCode)
	}
	g.SetRegionFault("dynamodb", "eu-west-1", FaultNone)

	// A service's regional fault wins over its every-region fault; clearing it leaves
	// the wider one.
	g.SetFault("dynamodb", FaultRefuse)
	g.SetRegionFault("dynamodb", "us-east-1", FaultBlackhole)
	expect("dynamodb refused everywhere", map[[2]string]int{{"dynamodb", "eu-west-1"}: refused, {"dynamodb", ""}: refused})
	errc := make(chan int, 1)
	go func() { c, _ := signed(t, s, "dynamodb", "us-east-1"); errc <- c }()
	waitHeld(t, g, 1)
	g.SetRegionFault("dynamodb", "us-east-1", FaultNone) // released: the wider fault is no blackhole
	select {
	case c := <-errc:
		if c != refused {
			t.Errorf("held request released with %d, want 503", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held request not released when the regional blackhole was cleared")
	}
	expect("regional fault cleared", map[[2]string]int{{"dynamodb", "us-east-1"}: refused})
	g.SetFault("dynamodb", FaultNone)

	// Delays: the regional delay of one service; others are not slowed (checked as
	// far as a lower bound can: the delayed one is at least that slow).
	const delay = 300 * time.Millisecond
	g.SetRegionDelay("", "us-east-1", delay)
	start := time.Now()
	if code, body := signed(t, s, "dynamodb", "us-east-1"); code != ok {
		t.Fatalf("delayed request: %d %s", code, body)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("request to a region delayed by %s took %s", delay, d)
	}
	g.SetRegionDelay("", "us-east-1", 0)

	// Nothing was forwarded while refused.
	if n := len(eu.got()); n != 0 {
		t.Errorf("eu-west-1 emulator got %d requests, all should have been stopped by faults", n)
	}
	waitHeld(t, g, 0)
}

// A whole region blackholed: held until the outage ends.
func TestRegionOutageBlackhole(t *testing.T) {
	eu := newUpstream(t)
	g, err := NewGateway(Options{Routes: []Route{{Service: "dynamodb", URL: eu.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, g)
	g.SetRegionFault("", "eu-west-1", FaultBlackhole)
	defer g.SetRegionFault("", "eu-west-1", FaultNone)
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	_, err = ddbIn(s, "eu-west-1").ListTables(ctx, &dynamodb.ListTablesInput{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ListTables in a blackholed region: %v, want a deadline error", err)
	}
	if _, err := ddbIn(s, "us-east-1").ListTables(ctxT(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables in another region: %v", err)
	}
	waitHeld(t, g, 0)
}

func TestScopeOf(t *testing.T) {
	for _, tc := range []struct {
		name, auth, query, target string
		svc, region               string
	}{
		{"sigv4", "AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=ab", "", "", "dynamodb", "eu-west-1"},
		{"sigv4 upper case", "AWS4-HMAC-SHA256 Credential=AKID/20250101/US-EAST-1/SQS/aws4_request,SignedHeaders=host", "", "", "sqs", "us-east-1"},
		{"sigv4a has no region", "AWS4-ECDSA-P256-SHA256 Credential=AKID/20250101/sns/aws4_request, SignedHeaders=host, Signature=ab", "", "", "sns", ""},
		{"presigned", "", "X-Amz-Credential=AKID%2F20250101%2Fap-south-1%2Fsqs%2Faws4_request", "", "sqs", "ap-south-1"},
		{"unsigned", "", "", "AmazonSQS.ListQueues", "sqs", ""},
		{"not a scope", "AWS4-HMAC-SHA256 Credential=AKID/eu-west-1/dynamodb", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := "http://127.0.0.1:4566/"
			if tc.query != "" {
				u += "?" + tc.query
			}
			r := httptest.NewRequest("POST", u, strings.NewReader("{}"))
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.target != "" {
				r.Header.Set("X-Amz-Target", tc.target)
			}
			if svc, region := scopeOf(r); svc != tc.svc || region != tc.region {
				t.Errorf("scopeOf = %q, %q; want %q, %q", svc, region, tc.svc, tc.region)
			}
		})
	}
}

func TestNewGatewayValidates(t *testing.T) {
	const u = "http://127.0.0.1:1"
	for _, routes := range [][]Route{
		nil,
		{{Service: "dynamodb", Region: "eu-west-1", URL: u}, {Service: "dynamodb", Region: "eu-west-1", URL: u}},
		{{Service: "dynamodb", URL: u}, {Service: "dynamodb", URL: u}},
		{{Service: "dynamodb", Region: "EU-WEST-1", URL: u}},
		{{Service: "dynamodb", Region: "eu/west", URL: u}},
		{{Service: "", Region: "eu-west-1", URL: u}},
		{{Service: "dynamodb", Region: "eu-west-1", URL: "127.0.0.1:1"}},
	} {
		if _, err := NewGateway(Options{Routes: routes}); err == nil {
			t.Errorf("NewGateway(%v) accepted invalid routes", routes)
		}
	}
	_, err := NewGateway(Options{Routes: []Route{{Service: "dynamodb", Region: "eu-west-1", URL: u}, {Service: "dynamodb", Region: "eu-west-1", URL: u}}})
	if err == nil || err.Error() != "edge: route dynamodb/eu-west-1 given twice" {
		t.Errorf("duplicate route: error %v, want one naming dynamodb/eu-west-1", err)
	}
}
