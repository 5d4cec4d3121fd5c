package otelmetrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/otelmetrics"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/edge"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

// theSite is one local site for the ha test of the package.
var theSite *site.Site

func TestMain(m *testing.M) {
	os.Exit(localtest.RunWithSite(m, nil, func(s *site.Site) { theSite = s }))
}

var ctx = context.Background()

// collected is one collection: metric name -> its data.
type collected map[string]metricdata.Metrics

func collect(t *testing.T, r *sdkmetric.ManualReader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	c := collected{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelmetrics.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otelmetrics.ScopeName)
		}
		for _, m := range sm.Metrics {
			c[m.Name] = m
		}
	}
	return c
}

// value is the data point of metric name whose attributes include want, as a float64;
// the test fails if there is not exactly one.
func (c collected) value(t *testing.T, name string, want ...attribute.KeyValue) float64 {
	t.Helper()
	m, ok := c[name]
	if !ok {
		t.Fatalf("no metric %s in %v", name, c.names())
	}
	var found []float64
	match := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				found = append(found, float64(p.Value))
			}
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				found = append(found, p.Value)
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				found = append(found, float64(p.Value))
			}
		}
	default:
		t.Fatalf("%s: data of type %T", name, m.Data)
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d data points, want 1", name, want, len(found))
	}
	return found[0]
}

func (c collected) names() []string {
	var n []string
	for k := range c {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

func reader(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	return r, mp
}

func memoryStore(t *testing.T) *client.Store {
	t.Helper()
	s, err := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory, InstanceID: "otel-mem"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestInstruments: every instrument with its kind, unit and description, and values that
// follow what a memory store was asked to do.
func TestInstruments(t *testing.T) {
	store := memoryStore(t)
	r, mp := reader(t)
	if _, err := otelmetrics.Register(store, mp, attribute.String("sessionha.cluster", "blue")); err != nil {
		t.Fatal(err)
	}
	c := collect(t, r)
	if got := c.value(t, "sessionha.client.requests", otelmetrics.RequestTypeKey.String("read")); got != 0 {
		t.Errorf("reads before any call: %v", got)
	}

	a, err := store.Create(ctx, client.NewSession{Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.Create(ctx, client.NewSession{Principal: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	a.Set("k", []byte("v"))
	if err := store.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := store.Load(ctx, a.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Destroy(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	c = collect(t, r)

	type kind int
	const (
		counter kind = iota
		upDown
		gauge
	)
	for _, w := range []struct {
		name, unit string
		kind       kind
		float      bool
	}{
		{"sessionha.client.requests", "{request}", counter, false},
		{"sessionha.client.cache.hits", "{hit}", counter, false},
		{"sessionha.client.ops.sent", "{op}", counter, false},
		{"sessionha.client.publish.failures", "{failure}", counter, false},
		{"sessionha.client.mode.switches", "{switch}", counter, false},
		{"sessionha.client.degraded.time", "s", counter, true},
		{"sessionha.client.bus.queries", "{query}", counter, false},
		{"sessionha.client.bus.timeouts", "{timeout}", counter, false},
		{"sessionha.client.notices", "{notice}", counter, false},
		{"sessionha.client.mode", "1", gauge, false},
		{"sessionha.client.sessions.cached", "{session}", upDown, false},
		{"sessionha.client.sessions.pending", "{session}", upDown, false},
	} {
		m, ok := c[w.name]
		if !ok {
			t.Errorf("no metric %s", w.name)
			continue
		}
		if m.Unit != w.unit || m.Description == "" {
			t.Errorf("%s: unit %q, description %q; want unit %q and a description", w.name, m.Unit, m.Description, w.unit)
		}
		var ok2 bool
		switch w.kind {
		case counter, upDown:
			var mono bool
			var temp metricdata.Temporality
			if w.float {
				d, is := m.Data.(metricdata.Sum[float64])
				ok2, mono, temp = is, d.IsMonotonic, d.Temporality
			} else {
				d, is := m.Data.(metricdata.Sum[int64])
				ok2, mono, temp = is, d.IsMonotonic, d.Temporality
			}
			ok2 = ok2 && mono == (w.kind == counter) && temp == metricdata.CumulativeTemporality
		case gauge:
			_, ok2 = m.Data.(metricdata.Gauge[int64])
		}
		if !ok2 {
			t.Errorf("%s: data %#v, want kind %d", w.name, m.Data, w.kind)
		}
	}
	if len(c) != 12 {
		t.Errorf("%d metrics, want 12: %v", len(c), c.names())
	}

	st := store.Stats()
	blue := attribute.String("sessionha.cluster", "blue")
	for _, w := range []struct {
		name string
		attr []attribute.KeyValue
		want float64
	}{
		{"sessionha.client.requests", []attribute.KeyValue{otelmetrics.RequestTypeKey.String("read"), blue}, 3},
		{"sessionha.client.requests", []attribute.KeyValue{otelmetrics.RequestTypeKey.String("write"), blue}, 3},
		{"sessionha.client.requests", []attribute.KeyValue{otelmetrics.RequestTypeKey.String("delete"), blue}, 1},
		{"sessionha.client.cache.hits", []attribute.KeyValue{blue}, float64(st.CacheHits)},
		{"sessionha.client.sessions.cached", []attribute.KeyValue{blue}, 1},
		{"sessionha.client.sessions.pending", []attribute.KeyValue{blue}, 0},
		{"sessionha.client.mode", []attribute.KeyValue{otelmetrics.ModeKey.String("local"), blue}, 1},
		{"sessionha.client.mode", []attribute.KeyValue{otelmetrics.ModeKey.String("failover"), blue}, 0},
		{"sessionha.client.mode", []attribute.KeyValue{otelmetrics.ModeKey.String("degraded"), blue}, 0},
		{"sessionha.client.mode.switches", []attribute.KeyValue{blue}, 0},
		{"sessionha.client.degraded.time", []attribute.KeyValue{blue}, 0},
	} {
		if got := c.value(t, w.name, w.attr...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.attr, got, w.want)
		}
	}
	if st.CacheHits != 3 {
		t.Errorf("Stats.CacheHits = %d, want 3 (a memory store serves every Load from memory)", st.CacheHits)
	}
	if st.Requests != st.Reads+st.Writes+st.Deletes {
		t.Errorf("Requests %d is not Reads+Writes+Deletes (%d+%d+%d)", st.Requests, st.Reads, st.Writes, st.Deletes)
	}
}

// TestUnregister: after Unregister the store is no longer read; two stores registered on
// one provider with their own attributes report apart.
func TestUnregister(t *testing.T) {
	one, two := memoryStore(t), memoryStore(t)
	r, mp := reader(t)
	reg1, err := otelmetrics.Register(one, mp, attribute.String("store", "one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otelmetrics.Register(two, mp, attribute.String("store", "two")); err != nil {
		t.Fatal(err)
	}
	if _, err := one.Create(ctx, client.NewSession{Principal: "a"}); err != nil {
		t.Fatal(err)
	}
	c := collect(t, r)
	write := otelmetrics.RequestTypeKey.String("write")
	if got := c.value(t, "sessionha.client.requests", write, attribute.String("store", "one")); got != 1 {
		t.Errorf("store one writes %v, want 1", got)
	}
	if got := c.value(t, "sessionha.client.requests", write, attribute.String("store", "two")); got != 0 {
		t.Errorf("store two writes %v, want 0", got)
	}
	if err := reg1.Unregister(); err != nil {
		t.Fatal(err)
	}
	if _, err := one.Create(ctx, client.NewSession{Principal: "a"}); err != nil {
		t.Fatal(err)
	}
	c = collect(t, r)
	d := c["sessionha.client.requests"].Data.(metricdata.Sum[int64])
	for _, p := range d.DataPoints {
		if v, _ := p.Attributes.Value("store"); v.AsString() == "one" {
			t.Errorf("store one still reported after Unregister: %v", p)
		}
	}
	if _, err := otelmetrics.Register(nil, mp); err == nil {
		t.Error("Register(nil store) succeeded")
	}
	if _, err := otelmetrics.Register(one, nil); err == nil {
		t.Error("Register(nil provider) succeeded")
	}
}

// TestDegraded: an ha store on the local site whose bus is cut at the edge reports the
// switch to degraded mode, the publish failures, the changes pending and the degraded
// time growing; once the bus is back, the switch back, nothing pending, and a degraded
// time that stops growing.
func TestDegraded(t *testing.T) {
	store, err := client.Open(ctx, client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: "otel-ha", AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), JournalDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	r, mp := reader(t)
	if _, err := otelmetrics.Register(store, mp); err != nil {
		t.Fatal(err)
	}
	sess, err := store.Create(ctx, client.NewSession{Principal: "dora"})
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, r)
	failover, degraded := otelmetrics.ModeKey.String("failover"), otelmetrics.ModeKey.String("degraded")
	if c.value(t, "sessionha.client.mode", failover) != 1 || c.value(t, "sessionha.client.ops.sent") != 1 {
		t.Fatalf("before the cut: mode failover %v, sent %v; want 1 and 1",
			c.value(t, "sessionha.client.mode", failover), c.value(t, "sessionha.client.ops.sent"))
	}

	theSite.Edge.SetFault("sns", edge.FaultRefuse)
	sess.Set("k", []byte("while the bus is cut"))
	if err := store.Save(ctx, sess); err != nil {
		t.Fatalf("Save while the bus is cut: %v (degraded mode acknowledges it)", err)
	}
	c = collect(t, r)
	if c.value(t, "sessionha.client.mode", degraded) != 1 || c.value(t, "sessionha.client.mode", failover) != 0 {
		t.Fatalf("after a failed publish: mode degraded %v, failover %v", c.value(t, "sessionha.client.mode", degraded), c.value(t, "sessionha.client.mode", failover))
	}
	if got := c.value(t, "sessionha.client.mode.switches"); got != 1 {
		t.Errorf("mode switches %v, want 1", got)
	}
	if got := c.value(t, "sessionha.client.publish.failures"); got < 1 {
		t.Errorf("publish failures %v, want at least 1", got)
	}
	if got := c.value(t, "sessionha.client.sessions.pending"); got != 1 {
		t.Errorf("pending %v, want 1 (the session saved while degraded)", got)
	}
	first := c.value(t, "sessionha.client.degraded.time")
	localtest.Eventually(t, "the degraded time grows while degraded", func() (bool, string) {
		now := collect(t, r).value(t, "sessionha.client.degraded.time")
		return now > first, fmt.Sprintf("%v s, first %v s", now, first)
	})

	theSite.Edge.SetFault("sns", edge.FaultNone)
	localtest.Eventually(t, "the store is back in failover mode with nothing pending", func() (bool, string) {
		c = collect(t, r)
		return c.value(t, "sessionha.client.mode", failover) == 1 && c.value(t, "sessionha.client.sessions.pending") == 0,
			fmt.Sprintf("failover %v, pending %v", c.value(t, "sessionha.client.mode", failover), c.value(t, "sessionha.client.sessions.pending"))
	})
	if got := c.value(t, "sessionha.client.mode.switches"); got != 2 {
		t.Errorf("mode switches %v, want 2 (degraded and back)", got)
	}
	total := c.value(t, "sessionha.client.degraded.time")
	st := store.Stats()
	if total <= first || st.Degraded <= 0 {
		t.Errorf("degraded time %v s after recovery, was %v s while degraded; Stats.Degraded %s", total, first, st.Degraded)
	}
	// Stopped: not a nanosecond more once back in failover mode (a stretch still counted
	// would grow between two collections: the clock reads nanoseconds).
	if again := collect(t, r).value(t, "sessionha.client.degraded.time"); again != total {
		t.Errorf("degraded time grew in failover mode: %v s, then %v s", total, again)
	}
	if d := st.Degraded.Seconds(); d < total {
		t.Errorf("Stats.Degraded %v s is less than what was exported before it (%v s)", d, total)
	}
}

// TestDegradedClosed: a store closed while degraded stops counting degraded time: it
// serves nobody any more, whatever its mode.
func TestDegradedClosed(t *testing.T) {
	store, err := client.Open(ctx, client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: "otel-ha-closed", AWS: &theSite.AWS, Logger: slog.New(slog.DiscardHandler), JournalDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	r, mp := reader(t)
	if _, err := otelmetrics.Register(store, mp); err != nil {
		t.Fatal(err)
	}
	theSite.Edge.SetFault("sns", edge.FaultRefuse)
	if _, err := store.Create(ctx, client.NewSession{Principal: "cleo"}); err != nil {
		t.Fatalf("Create while the bus is cut: %v", err)
	}
	if m := store.Mode(); m != client.ModeDegraded {
		t.Fatalf("mode %s after a failed publish", m)
	}
	_ = store.Close() // the bus is still cut: what is unsent stays journaled
	first := collect(t, r).value(t, "sessionha.client.degraded.time")
	if first <= 0 {
		t.Fatalf("degraded time %v s at Close, want more than 0", first)
	}
	if again := collect(t, r).value(t, "sessionha.client.degraded.time"); again != first {
		t.Errorf("a closed store's degraded time grew: %v s, then %v s", first, again)
	}
}
