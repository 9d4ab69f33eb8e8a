package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

// syncBuffer lets the server goroutines and the test share a log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes JSON log output, one record per line.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func findLine(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

func stack(logger *slog.Logger, h http.Handler) http.Handler {
	return Chain(h, RequestIDMiddleware, AccessLog(logger), Recover(logger), LimitBody(16))
}

func TestRequestIDReachesLogLines(t *testing.T) {
	var buf syncBuffer
	logger := NewLogger(&buf, "debug", "json")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		// A derived logger must keep the id too.
		logger.With("room", "test").InfoContext(r.Context(), "inside handler")
		fmt.Fprint(w, "ok")
	})
	srv := httptest.NewServer(stack(logger, mux))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/things/42?token=query-secret", nil)
	req.Header.Set(RequestIDHeader, "client.id_1-2")
	req.Header.Set("Authorization", "Bearer header-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); got != "client.id_1-2" {
		t.Fatalf("response X-Request-Id = %q", got)
	}

	lines := buf.lines(t)
	inside := findLine(lines, "inside handler")
	if inside == nil || inside["request_id"] != "client.id_1-2" || inside["room"] != "test" {
		t.Fatalf("handler log line lacks request_id: %v", inside)
	}
	access := findLine(lines, "http request")
	if access == nil {
		t.Fatalf("no access log line in %s", buf.String())
	}
	for k, want := range map[string]any{"request_id": "client.id_1-2", "method": "GET", "route": "GET /things/{id}", "status": 200.0, "bytes": 2.0} {
		if access[k] != want {
			t.Errorf("access log %s = %v, want %v", k, access[k], want)
		}
	}
	if _, ok := access["duration"]; !ok {
		t.Error("access log lacks duration")
	}
	for _, leak := range []string{"query-secret", "header-secret", "/things/42"} {
		if strings.Contains(buf.String(), leak) {
			t.Errorf("access log leaks %q: %s", leak, buf.String())
		}
	}
}

func TestRequestIDRejectsUnsafeIncomingIDs(t *testing.T) {
	var seen string
	h := RequestIDMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r.Context()) }))
	for _, bad := range []string{"", "has space", "new\nline", strings.Repeat("a", 65), "<script>"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set(RequestIDHeader, bad)
		h.ServeHTTP(rec, req)
		got := rec.Header().Get(RequestIDHeader)
		if got == bad || !validID(got, 64) || got != seen {
			t.Errorf("incoming %q: header %q, context %q", bad, got, seen)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set(RequestIDHeader, strings.Repeat("a", 64))
	h.ServeHTTP(rec, req)
	if rec.Header().Get(RequestIDHeader) != strings.Repeat("a", 64) {
		t.Error("a 64-character id must be kept")
	}
}

func TestRecoverReturns500AndKeepsServing(t *testing.T) {
	var buf syncBuffer
	logger := NewLogger(&buf, "info", "json")
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("/panic-after-write", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("partial"))
		panic("late boom")
	})
	mux.HandleFunc("/abort", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "fine") })
	srv := httptest.NewServer(stack(logger, mux))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/panic")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("panic: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if strings.TrimSpace(string(body)) != `{"error":{"code":"INTERNAL","message":"internal error"}}` {
		t.Fatalf("panic body = %s", body)
	}
	l := findLine(buf.lines(t), "panic serving request")
	if l == nil || l["panic"] != "boom" || !strings.Contains(fmt.Sprint(l["stack"]), "middleware_test.go") || l["request_id"] == nil {
		t.Fatalf("panic not logged with stack and request id: %v", l)
	}

	// A response already under way cannot become a 500; the connection is
	// aborted so the client does not mistake the truncated body for success.
	if resp, err := http.Get(srv.URL + "/panic-after-write"); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Error("a panic after writing must abort the response")
		}
	}
	if _, err := http.Get(srv.URL + "/abort"); err == nil {
		t.Error("http.ErrAbortHandler must abort the response")
	}

	resp, err = http.Get(srv.URL + "/ok")
	if err != nil {
		t.Fatalf("server stopped serving after panics: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "fine" {
		t.Fatalf("after panics: %d %s", resp.StatusCode, body)
	}
}

func TestLimitBody(t *testing.T) {
	h := LimitBody(16)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v any
		// Decoders wrap the read error; IsBodyTooLarge must see through it.
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			if IsBodyTooLarge(err) {
				apperr.WriteHTTP(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "too large")
				return
			}
			apperr.WriteHTTP(w, http.StatusBadRequest, "BAD_REQUEST", "bad json")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	post := func(body io.Reader) int {
		resp, err := http.Post(srv.URL, "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	big := `"` + strings.Repeat("x", 64) + `"`
	if got := post(strings.NewReader(`"small"`)); got != 204 {
		t.Errorf("small body: %d", got)
	}
	// Known length: refused before the handler runs.
	if got := post(strings.NewReader(big)); got != 413 {
		t.Errorf("declared large body: %d", got)
	}
	// Unknown length (chunked): refused when the read crosses the cap.
	if got := post(io.MultiReader(strings.NewReader(big))); got != 413 {
		t.Errorf("chunked large body: %d", got)
	}
	if IsBodyTooLarge(io.EOF) || IsBodyTooLarge(nil) {
		t.Error("IsBodyTooLarge must be false for other errors")
	}
	if !IsBodyTooLarge(fmt.Errorf("decode: %w", &http.MaxBytesError{Limit: 1})) {
		t.Error("IsBodyTooLarge must unwrap")
	}
}

func TestLoggerWithoutRequestIDAndTextFormat(t *testing.T) {
	var buf bytes.Buffer
	logger := NewLogger(&buf, "warn", "text")
	logger.Info("dropped")
	logger.WarnContext(WithRequestID(t.Context(), "rid-1"), "kept")
	logger.Warn("no context")
	out := buf.String()
	if strings.Contains(out, "dropped") || !strings.Contains(out, "request_id=rid-1") || strings.Count(out, "request_id") != 1 {
		t.Fatalf("text log:\n%s", out)
	}
}
