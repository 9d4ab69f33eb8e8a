package server

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// noConnector gives a *sql.DB without a real driver: the stats collector
// only reads db.Stats().
type noConnector struct{}

func (noConnector) Connect(context.Context) (driver.Conn, error) { return nil, errors.New("no db") }
func (noConnector) Driver() driver.Driver                        { return nil }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("metrics status %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	db := sql.OpenDB(noConnector{})
	defer db.Close()
	m.RegisterDB(db, "main")

	mux := http.NewServeMux()
	mux.Handle("GET /agents/{id}", m.Instrument("/agents/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "agent")
	})))
	for _, p := range []string{"/agents/1", "/agents/2", "/agents/missing"} {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	m.ObserveGraphQL("ListAgents", "query", 20*time.Millisecond, false)
	m.ObserveGraphQL("Evil-Name{with}"+strings.Repeat("x", 100), "mutation", time.Millisecond, true)
	m.ObserveGraphQL("", "weird", time.Millisecond, false)

	out := scrape(t, m)
	for _, want := range []string{
		`http_requests_total{method="GET",route="/agents/{id}",status="200"} 2`,
		`http_requests_total{method="GET",route="/agents/{id}",status="404"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/agents/{id}"} 3`,
		`graphql_operations_total{operation="ListAgents",outcome="ok",type="query"} 1`,
		`graphql_operations_total{operation="EvilNamewith` + strings.Repeat("x", 64-len("EvilNamewith")) + `",outcome="error",type="mutation"} 1`,
		`graphql_operations_total{operation="anonymous",outcome="ok",type="unknown"} 1`,
		`graphql_operation_duration_seconds_count{type="query"} 1`,
		`go_goroutines`,
		`go_sched_latencies_seconds_bucket{le=`,
		`go_sql_max_open_connections{db_name="main"}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if strings.Contains(out, "/agents/1") || strings.Contains(out, "missing") {
		t.Error("raw paths must never become labels")
	}
}

func TestMetricsOperationNameCap(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for i := range maxOperationNames + 50 {
		m.ObserveGraphQL("Op"+strconv.Itoa(i), "query", time.Millisecond, false)
	}
	out := scrape(t, m)
	if n := strings.Count(out, "graphql_operations_total{"); n != maxOperationNames+1 {
		t.Fatalf("%d operation series, want %d named + other", n, maxOperationNames)
	}
	if !strings.Contains(out, `graphql_operations_total{operation="other",outcome="ok",type="query"} 50`) {
		t.Error("names past the cap must fold into other")
	}
}

func TestInstrumentNamesRouteForAccessLog(t *testing.T) {
	var buf syncBuffer
	logger := NewLogger(&buf, "info", "json")
	m := NewMetrics(prometheus.NewRegistry())
	// Mounted without a ServeMux pattern: the route comes from Instrument.
	h := Chain(m.Instrument("/invoke", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), RequestIDMiddleware, AccessLog(logger))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/invoke?key=k", nil))
	l := findLine(buf.lines(t), "http request")
	if l == nil || l["route"] != "/invoke" || l["status"] != 200.0 {
		t.Fatalf("access line: %v", l)
	}
}

type fakeLive struct{}

func (fakeLive) Subscribers() int                           { return 7 }
func (fakeLive) Groups() int                                { return 3 }
func (fakeLive) Delivered() (delivered, overwritten uint64) { return 120, 4 }
func (fakeLive) PublishDropped() uint64                     { return 2 }

func TestLiveUsageMetrics(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.RegisterLive(fakeLive{})
	out := scrape(t, m)
	for _, want := range []string{
		"live_usage_subscriptions 7", "live_usage_filters 3", "live_usage_messages_total 120",
		"live_usage_messages_replaced_total 4", "live_usage_events_dropped_total 2",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
