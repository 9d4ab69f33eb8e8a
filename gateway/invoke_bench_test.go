package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// cannedTransport answers every request with one recorded Langflow answer, so the
// benchmark measures the gateway (and the Langflow client's encoding and parsing), not a
// network or a fake runtime's own work.
type cannedTransport struct {
	body []byte
}

func (c cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       req,
	}, nil
}

// nopRecorder accepts every usage event at once: the group commit is measured by the
// usage package and the load benchmark, not here.
type nopRecorder struct{}

func (nopRecorder) Record(context.Context, usage.Event) error { return nil }

// BenchmarkInvoke is one non-streamed call through the gateway's handler with warm caches:
// key verification (cached row), config resolution (cached), rate limits (none set),
// body parsing, the Langflow client with an echo runtime's recorded answer (usage
// reported), metering (no-op recorder) and the JSON answer.
func BenchmarkInvoke(b *testing.B) {
	e := newEnv(b, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "Be brief."})
	key := e.secret(f)

	// Record what the echo runtime answers this flow.
	rt := echoruntime.New(echoruntime.Options{ReportUsage: true})
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/run/"+f.flowID,
		strings.NewReader(`{"input_value":"hello","input_type":"chat","output_type":"chat","session_id":"s","tweaks":{"system_prompt":"Be brief."}}`)))
	if rec.Code != http.StatusOK {
		b.Fatalf("echo runtime: %d %s", rec.Code, rec.Body)
	}
	lf, err := langflow.New(langflow.Options{BaseURL: "http://langflow.bench", HTTPClient: &http.Client{Transport: cannedTransport{body: rec.Body.Bytes()}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(lf.Close)
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	b.Cleanup(func() { _ = limiter.Close() })
	gw, err := gateway.New(gateway.Deps{
		Verifier: e.verifier, Resolver: e.resolver, Limiter: limiter,
		Quota:   usage.NewQuotaCounter(usage.NewQuota(e.client), usage.QuotaCounterOptions{Logger: discardLogger()}),
		Runtime: lf, Recorder: nopRecorder{}, Logger: discardLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	h := gw.Handler()
	body := []byte(`{"input": "hello", "session_id": "bench-session"}`)
	call := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/api/agent-gateway/invoke/", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := call(); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"output":"[Be brief.] echo: hello"`) {
		b.Fatalf("warm-up call: %d %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if w := call(); w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
