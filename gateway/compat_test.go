package gateway_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

func TestCompatRoute(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver})
		f := e.seed(fixtureOptions{origins: []string{"https://shop.example.com"}})
		other := e.seed(fixtureOptions{})
		key := e.secret(f)
		path := "/api/v1/run/" + string(f.config)
		body := `{"input_value":"hello","input_type":"chat","output_type":"chat","tweaks":null,"session_id":"chat-1","extra":"ignored"}`

		r := e.do(http.MethodPost, path, map[string]string{"x-api-key": key, "Content-Type": "application/json"}, body)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var got struct {
			SessionID string `json:"session_id"`
			Outputs   []struct {
				Inputs  map[string]string `json:"inputs"`
				Outputs []struct {
					Results struct {
						Message struct {
							Text string `json:"text"`
							Data struct {
								Text string `json:"text"`
							} `json:"data"`
						} `json:"message"`
					} `json:"results"`
					Artifacts struct {
						Message string `json:"message"`
					} `json:"artifacts"`
					Messages []struct {
						Message string `json:"message"`
						Type    string `json:"type"`
					} `json:"messages"`
				} `json:"outputs"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		o := got.Outputs[0].Outputs[0]
		if got.SessionID != "chat-1" || got.Outputs[0].Inputs["input_value"] != "hello" ||
			o.Results.Message.Text != "echo: hello" || o.Results.Message.Data.Text != "echo: hello" ||
			o.Artifacts.Message != "echo: hello" || o.Messages[0].Message != "echo: hello" || o.Messages[0].Type != "text" {
			t.Fatalf("not Langflow's shape: %s", r.body)
		}
		if strings.Contains(string(r.body), string(f.buyer)) {
			t.Fatal("the namespaced Langflow session leaked")
		}

		// A key of another config, bad keys, bad bodies: {"detail": ...}.
		for name, c := range map[string]struct {
			key, body string
			status    int
		}{
			"other config's key": {e.secret(other), body, 403},
			"no key":             {"", body, 401},
			"bad key":            {"ar_sk_live_x.y.z", body, 401},
			"bad json":           {key, `{"input_value":`, 400},
			"bad input type":     {key, `{"input_value":"x","input_type":"image"}`, 400},
		} {
			h := map[string]string{}
			if c.key != "" {
				h["x-api-key"] = c.key
			}
			r := e.do(http.MethodPost, path, h, c.body)
			if r.status != c.status {
				t.Fatalf("%s: status %d: %s", name, r.status, r.body)
			}
			m := r.json(t)
			if d, _ := m["detail"].(string); d == "" || len(m) != 1 {
				t.Fatalf("%s: not a Langflow error: %s", name, r.body)
			}
		}

		// Bearer works too, and streaming uses Langflow's framing.
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path+"?stream=true", strings.NewReader(`{"input_value":"a b c"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var names []string
		var end map[string]any
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "" {
				continue
			}
			var ev struct {
				Event string          `json:"event"`
				Data  json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("not a Langflow stream line: %q", sc.Text())
			}
			names = append(names, ev.Event)
			if ev.Event == "end" {
				_ = json.Unmarshal(ev.Data, &end)
			}
		}
		if len(names) < 2 || names[0] != "token" || names[len(names)-1] != "end" {
			t.Fatalf("events %v", names)
		}
		if _, ok := end["result"].(map[string]any)["outputs"]; !ok {
			t.Fatalf("end event %v", end)
		}
	})
}

func TestCORS(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{origins: []string{"https://shop.example.com"}})

	// The invoke route's preflight admits any origin: it cannot know the config yet.
	for _, p := range []string{"/api/agent-gateway/invoke/", "/api/agent-gateway/invoke"} {
		r := e.do(http.MethodOptions, p, map[string]string{
			"Origin": "https://anywhere.example.org", "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
		}, "")
		h := r.header
		if r.status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://anywhere.example.org" ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Idempotency-Key") ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-API-Key") ||
			h.Get("Access-Control-Allow-Methods") != "POST" || h.Get("Access-Control-Max-Age") == "" {
			t.Fatalf("%s preflight: %d %v", p, r.status, h)
		}
	}

	// The compat route's preflight checks the config's origins.
	compat := "/api/v1/run/" + string(f.config)
	r := e.do(http.MethodOptions, compat, map[string]string{"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"}, "")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Fatalf("compat preflight, allowed origin: %d %v", r.status, r.header)
	}
	r = e.do(http.MethodOptions, compat, map[string]string{"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}, "")
	if r.status == 204 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("compat preflight, foreign origin: %d %v", r.status, r.header)
	}
	// A preflight carries no key: an unknown config is refused exactly like a foreign
	// origin, so nobody can probe which config ids exist.
	foreign := r
	unknown := e.do(http.MethodOptions, "/api/v1/run/"+string(pulid.MustNew(f.config.Prefix())), map[string]string{"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}, "")
	if unknown.status != foreign.status || string(unknown.body) != string(foreign.body) {
		t.Fatalf("compat preflight, unknown config: %d %s; foreign origin: %d %s", unknown.status, unknown.body, foreign.status, foreign.body)
	}

	// Real responses: ACAO only for the config's origins, whatever the key kind.
	secret := e.secret(f)
	pub, _ := e.key(f, apikey.KindPublishable)
	r = e.invoke(secret, `{"input":"hi"}`, "Origin", "https://evil.example.net")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("secret key, foreign origin: %d ACAO %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	r = e.invoke(pub, `{"input":"hi"}`, "Origin", "https://shop.example.com")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("publishable key, own origin: %d %v", r.status, r.header)
	}
	// The web component's call: publishable key in x-api-key on the compat route.
	r = e.do(http.MethodPost, compat, map[string]string{"x-api-key": pub, "Origin": "https://shop.example.com"}, `{"input_value":"hi","output_type":"chat","input_type":"chat"}`)
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Fatalf("embedded chat call: %d %s", r.status, r.body)
	}
}
