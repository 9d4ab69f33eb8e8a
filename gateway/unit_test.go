package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/gateway"
)

func TestInternalErrorDoesNotLeak(t *testing.T) {
	h, key, _, _ := fuzzGateway(t, func(d *gateway.Deps) { d.Runtime = instantRuntime{plainErrors: true} })
	req := httptest.NewRequest(http.MethodPost, "/api/agent-gateway/invoke/", strings.NewReader(`{"input":"plain: x"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"INTERNAL"`) || strings.Contains(w.Body.String(), "driver") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

type ctxKey struct{}

// TestRequestIDFromMiddleware: the server's id is used when it generated it, not when the
// caller chose it (a repeated caller id must not turn calls into unbilled replays).
func TestRequestIDFromMiddleware(t *testing.T) {
	h, key, _, _ := fuzzGateway(t, func(d *gateway.Deps) {
		d.RequestID = func(ctx context.Context) string { s, _ := ctx.Value(ctxKey{}).(string); return s }
	})
	call := func(callerHeader string) (string, string) {
		req := httptest.NewRequest(http.MethodPost, "/api/agent-gateway/invoke", strings.NewReader(`{"input":"x"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		if callerHeader != "" {
			req.Header.Set("X-Request-Id", callerHeader)
		}
		req = req.WithContext(context.WithValue(req.Context(), ctxKey{}, "mw-generated-1"))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var b struct {
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &b)
		return b.RequestID, w.Header().Get("X-Request-Id")
	}
	if body, hdr := call(""); body != "mw-generated-1" || hdr != body {
		t.Fatalf("generated id not used: body %q header %q", body, hdr)
	}
	if body, _ := call("mw-generated-1"); body == "mw-generated-1" {
		t.Fatal("a caller-chosen id became the usage record id")
	}
}

func TestNewRequiresDeps(t *testing.T) {
	if _, err := gateway.New(gateway.Deps{}); err == nil {
		t.Fatal("New accepted missing dependencies")
	}
}
