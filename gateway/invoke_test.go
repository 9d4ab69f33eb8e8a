package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
)

func TestInvokeJSON(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver})
		f := e.seed(fixtureOptions{systemPrompt: "Be brief."})
		key := e.secret(f)

		r := e.invoke(key, `{"input": "hello world", "session_id": "s-1"}`)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var got struct {
			Output    string `json:"output"`
			SessionID string `json:"session_id"`
			RequestID string `json:"request_id"`
			Usage     struct {
				InputTokens  int   `json:"input_tokens"`
				OutputTokens int   `json:"output_tokens"`
				ElapsedMS    int64 `json:"elapsed_ms"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		// The persona travels as the system_prompt tweak, which the echo runtime shows.
		if got.Output != "[Be brief.] echo: hello world" {
			t.Errorf("output = %q", got.Output)
		}
		if got.SessionID != "s-1" {
			t.Errorf("session_id = %q, want the caller's own", got.SessionID)
		}
		if got.RequestID == "" || r.header.Get("X-Request-Id") != got.RequestID {
			t.Errorf("request_id %q, header %q", got.RequestID, r.header.Get("X-Request-Id"))
		}
		if got.Usage.InputTokens <= 0 || got.Usage.OutputTokens <= 0 {
			t.Errorf("usage = %+v", got.Usage)
		}
		if r.header.Get("RateLimit-Policy") != "" {
			t.Errorf("no limits configured, yet RateLimit-Policy = %q", r.header.Get("RateLimit-Policy"))
		}

		rows := e.usageRows()
		if len(rows) != 1 {
			t.Fatalf("usage rows = %d, want 1", len(rows))
		}
		row := rows[0]
		if row.RequestID != got.RequestID || row.Status != 200 || row.TenantID != f.buyer ||
			row.ProviderTenantID != f.provider || row.ConfigID != f.config || row.AgentID != f.agent ||
			row.InputTokens != int64(got.Usage.InputTokens) || !row.TokensEstimated {
			t.Errorf("usage row = %+v", row)
		}

		// What Langflow received: our flow id, chat types, the namespaced session.
		var sent map[string]any
		if err := json.Unmarshal(e.rt.LastRunBody(), &sent); err != nil {
			t.Fatal(err)
		}
		wantSession := string(f.buyer) + ":" + string(f.config) + ":s-1"
		if sent["session_id"] != wantSession || sent["input_type"] != "chat" || sent["output_type"] != "chat" {
			t.Errorf("langflow body = %v", sent)
		}
	})
}

func TestInvokeWithoutTrailingSlashAndXAPIKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	r := e.do(http.MethodPost, "/api/agent-gateway/invoke", map[string]string{"X-API-Key": key}, `{"input":"hi"}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	if s, _ := m["session_id"].(string); s == "" {
		t.Error("a session id must be made when the caller sends none")
	}
	// Two different keys in the two headers are refused.
	other := e.secret(f)
	r = e.do(http.MethodPost, "/api/agent-gateway/invoke", map[string]string{"X-API-Key": key, "Authorization": "Bearer " + other}, `{"input":"hi"}`)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("two keys: status %d", r.status)
	}
}

func TestReportedTokensAreNotEstimated(t *testing.T) {
	e := newEnv(t, envOptions{echo: echoruntime.Options{ReportUsage: true}})
	f := e.seed(fixtureOptions{})
	r := e.invoke(e.secret(f), `{"input":"count me"}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	rows := e.usageRows()
	if len(rows) != 1 || rows[0].TokensEstimated || rows[0].OutputTokens == 0 {
		t.Fatalf("rows = %+v", rows)
	}
}

func TestSessionsAreNamespacedByTenant(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.seed(fixtureOptions{}), e.seed(fixtureOptions{})
	sessions := map[string]bool{}
	for _, f := range []fixture{a, b} {
		r := e.invoke(e.secret(f), `{"input":"remember me","session_id":"shared"}`)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if got := r.json(t)["session_id"]; got != "shared" {
			t.Errorf("caller sees session %v", got)
		}
		var sent struct {
			SessionID string `json:"session_id"`
		}
		_ = json.Unmarshal(e.rt.LastRunBody(), &sent)
		if !strings.HasPrefix(sent.SessionID, string(f.buyer)+":"+string(f.config)+":") {
			t.Errorf("langflow session %q lacks the tenant prefix", sent.SessionID)
		}
		sessions[sent.SessionID] = true
	}
	if len(sessions) != 2 {
		t.Fatalf("two tenants shared a Langflow session: %v", sessions)
	}
}

// A replayed Idempotency-Key is refused with 409 and never runs the agent again (it
// would be a free call: its record already exists), and it is never counted twice.
func TestIdempotencyReplayCountsOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver})
		f := e.seed(fixtureOptions{})
		key := e.secret(f)
		first := e.invoke(key, `{"input":"pay once"}`, "Idempotency-Key", "order-42")
		second := e.invoke(key, `{"input":"something else, for free?"}`, "Idempotency-Key", "order-42")
		if first.status != 200 || second.status != http.StatusConflict || second.code(t) != "IDEMPOTENT_REPLAY" {
			t.Fatalf("statuses %d %d %s", first.status, second.status, second.body)
		}
		id1 := first.json(t)["request_id"]
		if e.rt.Calls() != 1 {
			t.Errorf("the replay ran the agent again: calls = %d", e.rt.Calls())
		}
		if n := len(e.usageRows()); n != 1 {
			t.Fatalf("usage rows = %d, want 1", n)
		}
		// Another key with the same idempotency key is another call.
		third := e.invoke(e.secret(f), `{"input":"pay once"}`, "Idempotency-Key", "order-42")
		if third.json(t)["request_id"] == id1 {
			t.Fatal("idempotency keys must be scoped to the API key")
		}
		// A caller-chosen X-Request-Id does not make calls replays.
		for _, in := range []string{"a", "b"} {
			if r := e.invoke(key, `{"input":"`+in+`"}`, "X-Request-Id", "fixed"); r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
		}
		if n := len(e.usageRows()); n != 4 {
			t.Fatalf("usage rows = %d, want 4", n)
		}
		// A malformed idempotency key is a 400 (and metered).
		if r := e.invoke(key, `{"input":"c"}`, "Idempotency-Key", "bad key!"); r.status != 400 {
			t.Fatalf("bad Idempotency-Key: %d", r.status)
		}
	})
}

func TestTweaks(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{
		tweakable:   []string{"temperature", "OpenAIModel-x1.model_name", "code", "Python-1.code"},
		savedTweaks: map[string]any{"OpenAIModel-x1": map[string]any{"model_name": "small"}},
	})
	key := e.secret(f)
	cases := []struct {
		name   string
		tweaks string
		status int
	}{
		{"flat allowed", `{"temperature": 0.2}`, 200},
		{"nested allowed", `{"OpenAIModel-x1": {"model_name": "big"}}`, 200},
		{"flat not allowed", `{"top_p": 1}`, 403},
		{"nested not allowed", `{"OpenAIModel-x1": {"api_key": "x"}}`, 403},
		{"other component", `{"Prompt-2": {"model_name": "x"}}`, 403},
		{"code flat, even if listed", `{"code": "import os"}`, 403},
		{"code nested, even if listed", `{"Python-1": {"code": "import os"}}`, 403},
		{"code deep", `{"temperature": {"x": [{"Code": "import os"}]}}`, 403},
		{"not an object", `[1,2]`, 400},
		{"a string", `"x"`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.invoke(key, `{"input":"hi","tweaks":`+c.tweaks+`}`)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
		})
	}
	// The saved tweak and the request's reach Langflow merged.
	e.invoke(key, `{"input":"hi","tweaks":{"temperature":0.5}}`)
	var sent struct {
		Tweaks map[string]any `json:"tweaks"`
	}
	_ = json.Unmarshal(e.rt.LastRunBody(), &sent)
	if sent.Tweaks["temperature"] != 0.5 || sent.Tweaks["OpenAIModel-x1"].(map[string]any)["model_name"] != "small" {
		t.Fatalf("tweaks sent = %v", sent.Tweaks)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, envOptions{maxInputBytes: 1024})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	for name, body := range map[string]string{
		"malformed":     `{"input": "x"`,
		"not an object": `"hello"`,
		"empty body":    ``,
		"wrong type":    `{"input": 42}`,
		"stream type":   `{"input": "x", "stream": "yes"}`,
		"missing input": `{"session_id": "s"}`,
		"empty input":   `{"input": "   "}`,
		"oversized":     `{"input": "` + strings.Repeat("a", 1025) + `"}`,
		"unknown field": `{"input": "x", "model": "gpt"}`,
		"trailing":      `{"input": "x"} {"input": "y"}`,
		"bad session":   `{"input": "x", "session_id": "a b"}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := e.invoke(key, body)
			if r.status != http.StatusBadRequest || r.code(t) != "BAD_REQUEST" {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if r.json(t)["request_id"] == "" {
				t.Error("error without request_id")
			}
		})
	}
	if e.rt.Calls() != 0 {
		t.Fatalf("bad requests reached Langflow %d times", e.rt.Calls())
	}
	// Every one of them was metered as a 400.
	n, err := e.client.UsageRecord.Query().Where(usagerecord.Status(400), usagerecord.ErrorCode("BAD_REQUEST")).Count(sys())
	if err != nil || n != 11 {
		t.Fatalf("400 rows = %d (%v)", n, err)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, p := range []string{"/api/agent-gateway/health/", "/api/agent-gateway/health"} {
		r := e.do(http.MethodGet, p, nil, "")
		if r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
		m := r.json(t)
		if m["status"] != "ok" || m["runtime"].(map[string]any)["ready"] != true {
			t.Fatalf("%s: %s", p, r.body)
		}
		if strings.Contains(string(r.body), "127.0.0.1") {
			t.Fatal("health leaks the runtime address")
		}
	}
}
