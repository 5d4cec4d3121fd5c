// Package otelmetrics exports a client.Store's Stats as OpenTelemetry metrics, so that an
// auth server's counters outlive its process and reach the dashboards operators read.
//
//	reg, err := otelmetrics.Register(store, meterProvider)
//	...
//	defer reg.Unregister()
//
// Every instrument is observable: nothing is counted twice, and the store pays nothing
// between collections. At each collection one callback reads store.Stats() once and
// reports every instrument from that one snapshot, so the numbers of a collection agree
// with each other. The package imports only the OpenTelemetry API
// (go.opentelemetry.io/otel/metric): the application chooses the SDK, the exporter and
// the resource (service.name, service.instance.id, ...). A program that imports
// client and not this package builds with no OpenTelemetry at all.
//
// The instruments, their units (UCUM, as OpenTelemetry's semantic conventions write
// them) and attributes, with the Stats field each reads:
//
//	sessionha.client.requests          counter        {request}  sessionha.request.type = read (Reads) | write (Writes) | delete (Deletes); their sum is Requests
//	sessionha.client.cache.hits        counter        {hit}      CacheHits: Loads served from this instance's memory
//	sessionha.client.ops.sent          counter        {op}       Sent: ops the bus (ha) or the directory (file) took
//	sessionha.client.publish.failures  counter        {failure}  PublishFailures
//	sessionha.client.mode.switches     counter        {switch}   ModeSwitches, either way
//	sessionha.client.degraded.time     counter        s          Degraded: time spent in degraded mode, the stretch under way included
//	sessionha.client.bus.queries       counter        {query}    BusQueries: failover reads over the bus
//	sessionha.client.bus.timeouts      counter        {timeout}  BusTimeouts: of which unanswered within MaxWait
//	sessionha.client.notices           counter        {notice}   Notices: destroy notices taken from the notice topic
//	sessionha.client.mode              gauge          1          Mode: 1 for the current sessionha.mode (failover | degraded | local), 0 for the others
//	sessionha.client.sessions.cached   updowncounter  {session}  Cached: sessions held in memory
//	sessionha.client.sessions.pending  updowncounter  {session}  Pending: sessions with changes not yet sent, and logouts not yet sent
//
// Counters are cumulative since the store's Open. An alert on degraded mode watches
// sessionha.client.mode{sessionha.mode="degraded"} == 1, or the rate of
// sessionha.client.degraded.time; one on a bus in trouble, the rate of
// sessionha.client.publish.failures. Register's attributes (for example the cluster,
// when one process runs stores of several) go on every measurement.
package otelmetrics

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sessionha/sessionha/client"
)

// ScopeName is the instrumentation scope of the meter Register makes.
const ScopeName = "github.com/sessionha/sessionha/client/otelmetrics"

// Attribute keys of the measurements.
const (
	// RequestTypeKey tells the kinds of sessionha.client.requests apart: read, write, delete.
	RequestTypeKey = attribute.Key("sessionha.request.type")
	// ModeKey names the mode each sessionha.client.mode measurement is about.
	ModeKey = attribute.Key("sessionha.mode")
)

// Source is what Register reads: a *client.Store.
type Source interface {
	Stats() client.Stats
}

// modes are the values of ModeKey, one measurement each.
var modes = []client.Mode{client.ModeFailover, client.ModeDegraded, client.ModeLocal}

// Register makes the instruments on a meter of mp (scope ScopeName) and a callback that
// reports src's Stats into them at every collection, with attrs on every measurement.
// Unregister the returned registration when the store is closed for good; until then a
// closed store still reports its final counters. It fails only if the provider refuses
// an instrument.
func Register(src Source, mp metric.MeterProvider, attrs ...attribute.KeyValue) (metric.Registration, error) {
	if src == nil || mp == nil {
		return nil, errors.New("otelmetrics: Register needs a store and a MeterProvider")
	}
	m := mp.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		c, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	requests := counter("sessionha.client.requests", "{request}",
		"Calls of the session store: Load (read), Create and Save (write), Destroy (delete).")
	cacheHits := counter("sessionha.client.cache.hits", "{hit}",
		"Loads that found the session in this instance's memory.")
	sent := counter("sessionha.client.ops.sent", "{op}",
		"Session ops the persistence took: messages the bus accepted (ha) or files written (file).")
	pubFailures := counter("sessionha.client.publish.failures", "{failure}",
		"Publishes to the bus that failed after the SDK's retries or PublishTimeout, probes while degraded included.")
	switches := counter("sessionha.client.mode.switches", "{switch}",
		"Switches between failover and degraded mode, either way.")
	queries := counter("sessionha.client.bus.queries", "{query}",
		"Failover reads sent over the bus (ReadPath bus).")
	timeouts := counter("sessionha.client.bus.timeouts", "{timeout}",
		"Failover reads over the bus that got no answer within MaxWait.")
	notices := counter("sessionha.client.notices", "{notice}",
		"Destroy notices taken from the notice topic.")
	degraded, err := m.Float64ObservableCounter("sessionha.client.degraded.time", metric.WithUnit("s"),
		metric.WithDescription("Time spent in degraded mode (the bus unreachable), the stretch under way included."))
	errs = append(errs, err)
	mode, err := m.Int64ObservableGauge("sessionha.client.mode", metric.WithUnit("1"),
		metric.WithDescription("1 for the store's current mode (sessionha.mode: failover, degraded, local), 0 for the others."))
	errs = append(errs, err)
	cached := upDown("sessionha.client.sessions.cached", "{session}", "Sessions held in this instance's memory.")
	pending := upDown("sessionha.client.sessions.pending", "{session}",
		"Sessions with changes not yet sent, and logouts not yet sent.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelmetrics: %w", err)
	}

	common := attribute.NewSet(attrs...)
	with := func(extra ...attribute.KeyValue) metric.MeasurementOption {
		if len(extra) == 0 {
			return metric.WithAttributeSet(common)
		}
		return metric.WithAttributes(append(common.ToSlice(), extra...)...)
	}
	// Built once: a collection allocates no attribute sets.
	all := with()
	read, write, del := with(RequestTypeKey.String("read")), with(RequestTypeKey.String("write")), with(RequestTypeKey.String("delete"))
	modeOpts := make([]metric.MeasurementOption, len(modes))
	for i, md := range modes {
		modeOpts[i] = with(ModeKey.String(md.String()))
	}

	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := src.Stats()
		o.ObserveInt64(requests, st.Reads, read)
		o.ObserveInt64(requests, st.Writes, write)
		o.ObserveInt64(requests, st.Deletes, del)
		o.ObserveInt64(cacheHits, st.CacheHits, all)
		o.ObserveInt64(sent, st.Sent, all)
		o.ObserveInt64(pubFailures, st.PublishFailures, all)
		o.ObserveInt64(switches, st.ModeSwitches, all)
		o.ObserveFloat64(degraded, st.Degraded.Seconds(), all)
		o.ObserveInt64(queries, st.BusQueries, all)
		o.ObserveInt64(timeouts, st.BusTimeouts, all)
		o.ObserveInt64(notices, st.Notices, all)
		for i, md := range modes {
			v := int64(0)
			if st.Mode == md {
				v = 1
			}
			o.ObserveInt64(mode, v, modeOpts[i])
		}
		o.ObserveInt64(cached, int64(st.Cached), all)
		o.ObserveInt64(pending, int64(st.Pending), all)
		return nil
	}, requests, cacheHits, sent, pubFailures, switches, degraded, queries, timeouts, notices, mode, cached, pending)
	if err != nil {
		return nil, fmt.Errorf("otelmetrics: register the callback: %w", err)
	}
	return reg, nil
}
