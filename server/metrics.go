package server

import (
	"database/sql"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxOperationNames caps distinct graphql operation labels: names come from
// clients, so without a cap anyone could grow the series set without bound.
const maxOperationNames = 500

// Metrics owns the process's Prometheus collectors, all registered on the
// registry handed in (never the global default registry, so tests and
// several servers in one process do not collide).
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	gqlOps       *prometheus.CounterVec
	gqlDuration  *prometheus.HistogramVec

	mu       sync.Mutex
	opsNames map[string]struct{}
}

// NewMetrics registers the Go runtime, process and HTTP/GraphQL collectors on
// reg. It panics on a duplicate registration, which is a wiring bug.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		gqlOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "graphql_operations_total",
			Help: "GraphQL operations by operation name, type and outcome (ok or error).",
		}, []string{"operation", "type", "outcome"}),
		gqlDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "graphql_operation_duration_seconds",
			Help:    "GraphQL operation latency by operation type.",
			Buckets: prometheus.DefBuckets,
		}, []string{"type"}),
		opsNames: map[string]struct{}{},
	}
	reg.MustRegister(
		// The scheduler's metrics (about 60 more series) add go_sched_latencies_seconds:
		// how long goroutines waited to run once runnable. It tells a process short of
		// CPU (or crowded by its own goroutines) from one waiting on something else. The
		// rest are goroutine counts by state and stop-the-world pause histograms.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration, m.gqlOps, m.gqlDuration,
	)
	return m
}

// Instrument counts and times requests to h under the given route label. The
// label is the pattern the caller mounts h at, never r.URL.Path, so ids in
// paths cannot explode cardinality. It also names the route for AccessLog.
func (m *Metrics) Instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r.Context(), route)
		start := time.Now()
		rw := wrapWriter(w)
		completed := false
		method := methodLabel(r.Method)
		defer func() {
			status := rw.status
			if status == 0 {
				// Nothing written: net/http sends 200 on a normal return;
				// a panic becomes Recover's 500 further out.
				status = http.StatusOK
				if !completed {
					status = http.StatusInternalServerError
				}
			}
			m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(rw, r)
		completed = true
	})
}

// methodLabel bounds the method label: any string is a valid HTTP method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// ObserveGraphQL records one GraphQL operation. opType is query, mutation or
// subscription (anything else is "unknown"); the name is cleaned to at most
// 64 characters of [A-Za-z0-9_], "anonymous" when empty, and "other" once
// maxOperationNames distinct names have been seen.
func (m *Metrics) ObserveGraphQL(operationName, opType string, d time.Duration, failed bool) {
	switch opType {
	case "query", "mutation", "subscription":
	default:
		opType = "unknown"
	}
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	name := m.operationLabel(operationName)
	m.gqlOps.WithLabelValues(name, opType, outcome).Inc()
	m.gqlDuration.WithLabelValues(opType).Observe(d.Seconds())
}

func (m *Metrics) operationLabel(raw string) string {
	b := make([]byte, 0, 64)
	for i := 0; i < len(raw) && len(b) < 64; i++ {
		c := raw[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b = append(b, c)
		}
	}
	name := string(b)
	if name == "" {
		return "anonymous"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.opsNames[name]; ok {
		return name
	}
	if len(m.opsNames) >= maxOperationNames {
		return "other"
	}
	m.opsNames[name] = struct{}{}
	return name
}

// RegisterDB exports database/sql pool statistics (open, in use, waits) under
// db_name=name. It panics if name is already registered (a wiring bug).
func (m *Metrics) RegisterDB(db *sql.DB, name string) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// LiveUsage is what the live-usage metrics read; *live.Hub implements it.
type LiveUsage interface {
	Subscribers() int
	Groups() int
	Delivered() (delivered, overwritten uint64)
	PublishDropped() uint64
}

// RegisterLive exposes the usageStats hub's load: subscriptions, the distinct filters
// that cost the work, the messages sent, those a slow subscriber had not read (replaced
// by a newer state), and the usage events the bus could not take.
func (m *Metrics) RegisterLive(h LiveUsage) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "live_usage_subscriptions", Help: "Open usageStats subscriptions on this replica.",
		}, func() float64 { return float64(h.Subscribers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "live_usage_filters", Help: "Distinct usageStats filters followed on this replica (the unit of work).",
		}, func() float64 { return float64(h.Groups()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "live_usage_messages_total", Help: "usageStats messages handed to subscribers after their first.",
		}, func() float64 { d, _ := h.Delivered(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "live_usage_messages_replaced_total", Help: "usageStats messages that replaced one the subscriber had not read (too slow for the interval).",
		}, func() float64 { _, o := h.Delivered(); return float64(o) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "live_usage_events_dropped_total", Help: "Usage events not published to the bus (it could not keep up or failed); replicas resync.",
		}, func() float64 { return float64(h.PublishDropped()) }),
	)
}

// Handler serves the registry in the Prometheus exposition format. A failing
// collector yields a partial answer rather than none, so one bad collector
// does not blind monitoring.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}
