package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/server"
)

// startDev starts the whole service in dev mode on a free loopback port with its own
// data directory, and returns its base URL and the banner's `dev <name>: <value>` lines.
func startDev(t *testing.T) (string, map[string]string, context.CancelFunc, <-chan error) {
	t.Helper()
	return startDevOn(t, "")
}

// startDevOn is startDev on the given database URL ("" for a SQLite file).
func startDevOn(t *testing.T, databaseURL string) (string, map[string]string, context.CancelFunc, <-chan error) {
	t.Helper()
	dir := t.TempDir()
	if databaseURL == "" {
		databaseURL = "sqlite:" + filepath.Join(dir, "ar.db")
	}
	env := map[string]string{
		"DEV": "true", "ADDR": "127.0.0.1:0", "DATA_DIR": dir, "MIGRATE_ON_START": "true",
		"DATABASE_URL": databaseURL, "LOG_LEVEL": "warn",
	}
	cfg, err := server.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var banner bytes.Buffer
	srv.PrintBanner(&banner)
	creds := map[string]string{}
	sc := bufio.NewScanner(&banner)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ": "); ok && strings.HasPrefix(name, "dev ") {
			creds[strings.TrimPrefix(name, "dev ")] = value
		}
	}
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		done <- srv.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return "http://" + srv.Addr(), creds, cancel, done
}

func gql(t *testing.T, base, token, query string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": query})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// The operator interface of `serve --dev`: each credential on its own line, and each dev
// token works against the API as the demo user it names.
func TestDevModeEndToEnd(t *testing.T) {
	base, creds, cancel, done := startDev(t)
	for _, name := range []string{"admin token", "provider token", "customer token", "api key", "publishable key", "config id"} {
		if creds[name] == "" {
			t.Fatalf("banner has no `dev %s:` line; got %v", name, creds)
		}
	}
	if !strings.HasPrefix(creds["api key"], "ar_sk_live_") || !strings.HasPrefix(creds["publishable key"], "ar_pk_live_") || !strings.HasPrefix(creds["config id"], "cfg_") {
		t.Fatalf("credential formats: %v", creds)
	}

	cases := []struct {
		token, wantTenant string
		admin             bool
	}{
		{creds["customer token"], "demo-buyer", false},
		{creds["provider token"], "demo-provider", false},
		{creds["admin token"], "", true},
	}
	for _, c := range cases {
		out := gql(t, base, c.token, `{ viewer { subject isPlatformAdmin memberships { tenant { slug } } } }`)
		v, _ := out["data"].(map[string]any)["viewer"].(map[string]any)
		if v == nil {
			t.Fatalf("viewer: %v", out)
		}
		if v["isPlatformAdmin"] != c.admin {
			t.Fatalf("isPlatformAdmin = %v for %v", v["isPlatformAdmin"], v["subject"])
		}
		ms := v["memberships"].([]any)
		if c.wantTenant != "" && (len(ms) != 1 || ms[0].(map[string]any)["tenant"].(map[string]any)["slug"] != c.wantTenant) {
			t.Fatalf("memberships of %v = %v", v["subject"], ms)
		}
	}

	// The customer's config is the one the banner names; the provider does not see it.
	out := gql(t, base, creds["customer token"], `{ agentConfigs { edges { node { id } } } }`)
	if !strings.Contains(mustJSON(out), creds["config id"]) {
		t.Fatalf("customer's configs %s lack %s", mustJSON(out), creds["config id"])
	}
	out = gql(t, base, creds["provider token"], `{ agentConfigs { totalCount } }`)
	if got := out["data"].(map[string]any)["agentConfigs"].(map[string]any)["totalCount"]; got != float64(0) {
		t.Fatalf("provider sees %v buyer configs", got)
	}

	// The printed secret key invokes the demo agent through the built-in echo runtime, and
	// the call shows up in the buyer's usage rollups.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/agent-gateway/invoke/", strings.NewReader(`{"input":"hello"}`))
	req.Header.Set("Authorization", "Bearer "+creds["api key"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		Output string `json:"output"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = json.Unmarshal(b, &inv)
	if resp.StatusCode != http.StatusOK || !strings.Contains(inv.Output, "echo: hello") {
		t.Fatalf("invoke with the dev api key: %d %s", resp.StatusCode, b)
	}

	for _, c := range []struct{ path, want string }{
		{"/healthz", "ok"}, {"/readyz", "ok"},
		{"/metrics", `http_requests_total{method="POST",route="/graphql",status="200"}`},
		{"/metrics", "\nlive_usage_subscriptions 0\n"},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), c.want) {
			t.Fatalf("%s: %d, missing %q", c.path, resp.StatusCode, c.want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

// Dev mode serves a token issuer: it must refuse to listen anywhere but loopback.
func TestDevModeRefusesNonLoopback(t *testing.T) {
	env := map[string]string{"DEV": "true", "ADDR": "0.0.0.0:0", "DATA_DIR": t.TempDir()}
	cfg, err := server.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("New on 0.0.0.0 in dev mode: %v", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
