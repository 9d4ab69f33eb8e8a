package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHealthz(t *testing.T) {
	rec := httptest.NewRecorder()
	Healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	bad := func(context.Context) error {
		return errors.New("dial tcp 10.0.0.5:5432: password authentication failed")
	}
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

	rec := httptest.NewRecorder()
	Readyz(map[string]func(context.Context) error{"db": ok, "redis": ok}, time.Second).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Fatalf("all passing: %d %s", rec.Code, rec.Body)
	}

	var logs syncBuffer
	rec = httptest.NewRecorder()
	start := time.Now()
	ReadyzWithLog(map[string]func(context.Context) error{"db": bad, "redis": hang, "langflow": ok}, 100*time.Millisecond, NewLogger(&logs, "info", "json")).
		ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if time.Since(start) > 2*time.Second {
		t.Fatal("a hanging check must be cut off by the timeout")
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("failing check: %d", rec.Code)
	}
	var body struct {
		Status string   `json:"status"`
		Failed []string `json:"failed"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Status != "unavailable" || !reflect.DeepEqual(body.Failed, []string{"db", "redis"}) {
		t.Fatalf("body %s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "password") || strings.Contains(rec.Body.String(), "10.0.0.5") {
		t.Fatal("readyz must not expose error text")
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Error("the error text belongs in the log")
	}
}
