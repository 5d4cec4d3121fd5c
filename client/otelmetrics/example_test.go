package otelmetrics_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/otelmetrics"
)

// Wiring a store's counters into OpenTelemetry. An auth server builds its MeterProvider
// with the reader and exporter it uses (a PeriodicReader with an OTLP or Prometheus
// exporter, and a resource naming the service and instance); the ManualReader here
// stands in for them so that the example can print what an exporter would send.
func Example() {
	ctx := context.Background()
	store, err := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	reg, err := otelmetrics.Register(store, provider)
	if err != nil {
		panic(err)
	}
	defer reg.Unregister()

	s, _ := store.Create(ctx, client.NewSession{Principal: "alice"})
	_, _ = store.Load(ctx, s.ID())

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "sessionha.client.requests" {
			continue
		}
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			kind, _ := p.Attributes.Value(otelmetrics.RequestTypeKey)
			fmt.Printf("%s %s=%s: %d %s\n", m.Name, otelmetrics.RequestTypeKey, kind.AsString(), p.Value, m.Unit)
		}
	}
	// Unordered output:
	// sessionha.client.requests sessionha.request.type=read: 1 {request}
	// sessionha.client.requests sessionha.request.type=write: 1 {request}
	// sessionha.client.requests sessionha.request.type=delete: 0 {request}
}
