package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// Fakes for the fuzz test: it runs thousands of calls a second, so nothing touches a
// database or the network. The key is still verified by the real apikey.Verifier.

type memStore struct{ rows map[string]apikey.Record }

func (s memStore) LookupByHash(_ context.Context, hash string) (apikey.Record, error) {
	if r, ok := s.rows[hash]; ok {
		return r, nil
	}
	return apikey.Record{}, apikey.ErrNotFound
}

func (memStore) TouchLastUsed(context.Context, []pulid.ID, time.Time) error { return nil }

type fixedResolver struct{ t gateway.Target }

func (r fixedResolver) Resolve(_ context.Context, id pulid.ID) (gateway.Target, error) {
	if id != r.t.ConfigID {
		return gateway.Target{}, gateway.ErrConfigNotFound
	}
	return r.t, nil
}

type zeroQuota struct{}

func (zeroQuota) MonthToDate(context.Context, pulid.ID, pulid.ID) (int64, int64, error) {
	return 0, 0, nil
}

type okRecorder struct {
	mu     sync.Mutex
	events int
}

func (r *okRecorder) Record(_ context.Context, ev usage.Event) error {
	if ev.RequestID == "" || ev.TenantID == "" || ev.AgentID == "" {
		return errors.New("invalid event")
	}
	r.mu.Lock()
	r.events++
	r.mu.Unlock()
	return nil
}

// instantRuntime answers at once; inputs starting with "fail:" pick a failure kind, and
// with plainErrors "plain:" fails with an error that is not Langflow's.
type instantRuntime struct{ plainErrors bool }

func (rt instantRuntime) result(req langflow.RunRequest) (langflow.RunResult, error) {
	if rt.plainErrors && strings.HasPrefix(req.InputValue, "plain:") {
		return langflow.RunResult{}, errors.New("driver: something internal")
	}
	if kind, ok := strings.CutPrefix(req.InputValue, "fail:"); ok {
		return langflow.RunResult{}, &langflow.Error{Kind: langflow.Kind(kind), Op: "run", Detail: "Traceback (most recent call last): secret"}
	}
	text := "echo: " + req.InputValue
	return langflow.RunResult{Text: text, SessionID: req.SessionID,
		InputTokens: langflow.EstimateTokens(req.InputValue), OutputTokens: langflow.EstimateTokens(text)}, nil
}

func (rt instantRuntime) Run(_ context.Context, _ string, req langflow.RunRequest) (langflow.RunResult, error) {
	return rt.result(req)
}

func (rt instantRuntime) Stream(_ context.Context, _ string, req langflow.RunRequest, onToken func(string) error) (langflow.RunResult, error) {
	res, err := rt.result(req)
	if err != nil {
		return res, err
	}
	for _, w := range strings.SplitAfter(res.Text, " ") {
		if err := onToken(w); err != nil {
			return langflow.RunResult{}, err
		}
	}
	return res, nil
}

func (instantRuntime) Ready(context.Context) error { return nil }

// fuzzGateway builds a gateway over fakes and returns it with a valid secret key, a valid
// publishable key and the config id.
func fuzzGateway(t testing.TB, adjust ...func(*gateway.Deps)) (http.Handler, string, string, pulid.ID) {
	kr, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "k1", Secret: testSecret}},
		apikey.KeyringOptions{Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	tenant, cfg := pulid.MustNew("tnt"), pulid.MustNew("cfg")
	store := memStore{rows: map[string]apikey.Record{}}
	mint := func(kind apikey.Kind, scope apikey.Scope) string {
		exp := time.Now().Add(time.Hour)
		m, err := kr.Mint(apikey.MintParams{Kind: kind, TenantID: tenant, ConfigID: cfg, Scopes: []apikey.Scope{scope}, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		store.rows[m.Hash] = apikey.Record{ID: pulid.MustNew("key"), TenantID: tenant, ConfigID: cfg, Kind: kind,
			Scopes: []apikey.Scope{scope}, ExpiresAt: &exp}
		return m.Key
	}
	secret, pub := mint(apikey.KindSecret, apikey.ScopeInvoke), mint(apikey.KindPublishable, apikey.ScopeWidgetInvoke)
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	t.Cleanup(func() { _ = limiter.Close() })
	deps := gateway.Deps{
		Verifier: apikey.NewVerifier(kr, store, apikey.VerifierOptions{}),
		Resolver: fixedResolver{gateway.Target{
			ConfigID: cfg, TenantID: tenant, ProviderTenantID: pulid.MustNew("tnt"), AgentID: pulid.MustNew("agt"),
			SubscriptionStatus: "active", RuntimeFlowID: "flow", SystemPrompt: "persona",
			TweakableFields: []string{"temperature", "Model-1.model_name"}, AllowedOrigins: []string{"https://*.example.com"},
		}},
		Limiter: limiter, Quota: zeroQuota{}, Runtime: instantRuntime{}, Recorder: &okRecorder{},
		Logger:       discardLogger(),
		VisitorLimit: ratelimit.Limit{Rate: 1 << 20, Period: time.Minute},
	}
	for _, a := range adjust {
		a(&deps)
	}
	gw, err := gateway.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	return gw.Handler(), secret, pub, cfg
}

func FuzzInvokeRequest(f *testing.F) {
	seeds := []struct {
		body                             string
		accept, origin, idem, authHeader string
		compat, publishable              bool
	}{
		{`{"input":"hello"}`, "", "", "", "bearer", false, false},
		{`{"input":"hello","stream":true,"session_id":"s"}`, "", "", "k-1", "bearer", false, false},
		{`{"input":"hello","tweaks":{"temperature":1,"Model-1":{"model_name":"x"}}}`, "text/event-stream", "", "", "x-api-key", false, false},
		{`{"input":"hello","tweaks":{"code":"x"}}`, "", "", "", "bearer", false, false},
		{`{"input":"fail:timeout"}`, "", "", "", "bearer", false, false},
		{`{"input":"fail:upstream_error","stream":true}`, "", "", "", "bearer", false, false},
		{`{"input_value":"hi","session_id":"x"}`, "", "https://a.example.com", "", "x-api-key", true, true},
		{`{"input":`, "", "", "", "bearer", false, false},
		{`[]`, "", "", "", "bearer", false, false},
		{`{"input":"\u0000\ud800"}`, "", "null", "", "bearer", false, true},
		{"", "text/event-stream;q=0.5, */*", "", strings.Repeat("a", 200), "bearer", false, false},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.accept, s.origin, s.idem, s.authHeader, s.compat, s.publishable)
	}
	h, secret, pub, cfg := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, body []byte, accept, origin, idem, authHeader string, compat, publishable bool) {
		path := "/api/agent-gateway/invoke/"
		if compat {
			path = "/api/v1/run/" + string(cfg)
			if len(idem)%2 == 1 {
				path += "?stream=true"
			}
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		key := secret
		if publishable {
			key = pub
		}
		switch authHeader {
		case "x-api-key":
			req.Header.Set("X-API-Key", key)
		default:
			req.Header.Set("Authorization", "Bearer "+key)
		}
		setIfValid(req.Header, "Accept", accept)
		setIfValid(req.Header, "Origin", origin)
		setIfValid(req.Header, "Idempotency-Key", idem)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req) // a panic fails the fuzz target

		status := w.Code
		if w.Header().Get("X-Request-Id") == "" {
			t.Fatal("response without X-Request-Id")
		}
		if status >= 500 {
			code := errorCode(w.Body.Bytes(), compat)
			switch {
			case status == 502 && (compat || code == "RUNTIME_ERROR"),
				status == 503 && (compat || code == "RUNTIME_UNAVAILABLE"),
				status == 504 && (compat || code == "RUNTIME_TIMEOUT"):
			default:
				t.Fatalf("unexpected %d: %s", status, w.Body.Bytes())
			}
			if bytes.Contains(w.Body.Bytes(), []byte("Traceback")) {
				t.Fatalf("traceback leaked: %s", w.Body.Bytes())
			}
		}
		if status >= 200 && status < 300 && !json.Valid(body) {
			t.Fatalf("%d for a body that is not JSON: %q", status, body)
		}
		if status == 200 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
			// A stream that answered 200 ends with exactly one terminal event.
			out := w.Body.String()
			if !strings.Contains(out, "end") && !strings.Contains(out, "error") {
				t.Fatalf("stream without a terminal event: %q", out)
			}
		}
	})
}

// setIfValid sets a header unless the value could not travel in a real request.
func setIfValid(h http.Header, k, v string) {
	if v == "" || strings.ContainsAny(v, "\r\n\x00") {
		return
	}
	h.Set(k, v)
}

func errorCode(body []byte, compat bool) string {
	if compat {
		return ""
	}
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &b)
	return b.Error.Code
}
