package widget_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/seed"
	"github.com/gsvdev/agentregistry/internal/usage"
	"github.com/gsvdev/agentregistry/widget"
)

// env is the service as a browser meets it: the gateway (built like server/gateway.go:
// key service and verifier, ent resolver, memory limiter, quota counter, group-commit
// recorder, the Langflow client in front of the echo runtime) and the widget, mounted on
// one loopback server, over the seeded demo data and its dev keys.
type env struct {
	t         testing.TB
	db        *database.DB
	echo      *echoruntime.Runtime
	resolver  *gateway.EntResolver
	settings  *widget.EntSettings
	keys      *keys.Service
	widget    *widget.Widget
	svc       *httptest.Server // the service's origin
	configID  pulid.ID
	pubKey    string
	secretKey string
	tenantID  pulid.ID
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := dbtest.Open(t, database.DriverSQLite)
	res, err := seed.Demo(ctx, db.Client)
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "test", Secret: []byte(strings.Repeat("k", 32))}},
		apikey.KeyringOptions{Issuer: "http://registry.test", Audience: "http://registry.test/gateway"})
	if err != nil {
		t.Fatal(err)
	}
	svc := keys.New(db.Client, keyring, nil)
	if res, err = seed.DevKeys(ctx, db.Client, svc, res); err != nil {
		t.Fatal(err)
	}
	verifier := apikey.NewVerifier(keyring, svc, apikey.VerifierOptions{Logger: logger})
	resolver := gateway.NewEntResolver(db.Client, gateway.EntResolverOptions{})
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	t.Cleanup(func() { _ = limiter.Close() })
	quota := usage.NewQuotaCounter(usage.NewQuota(db.Client), usage.QuotaCounterOptions{Logger: logger})
	recorder := usage.NewRecorder(db, usage.RecorderOptions{Quota: quota, Logger: logger})
	t.Cleanup(func() { _ = recorder.Close(context.Background()) })

	echo := echoruntime.New(echoruntime.Options{TokenDelay: 30 * time.Millisecond})
	echoSrv := httptest.NewServer(echo)
	t.Cleanup(echoSrv.Close)
	lf, err := langflow.New(langflow.Options{BaseURL: echoSrv.URL, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lf.Close)
	gw, err := gateway.New(gateway.Deps{
		Verifier: verifier, Resolver: resolver, Limiter: limiter, Quota: quota,
		Runtime: lf, Recorder: recorder, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	settings := widget.NewEntSettings(db.Client, time.Millisecond)
	wd, err := widget.New(widget.Options{
		Verifier: verifier, Resolver: resolver, Settings: settings, Dev: true,
		DemoConfigID: string(res.Config), DemoKey: res.PublishableKey, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// Mounted the way server/routes.go mounts rooms.
	for _, e := range gw.Endpoints() {
		mux.Handle(e.Pattern, e.Handler)
	}
	for _, e := range wd.Endpoints() {
		mux.Handle(e.Pattern, e.Handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{
		t: t, db: db, echo: echo, resolver: resolver, settings: settings, keys: svc, widget: wd, svc: srv,
		configID: res.Config, pubKey: res.PublishableKey, secretKey: res.APIKey, tenantID: res.BuyerTenant,
	}
}

// allowOrigins replaces the config's allowed origins and makes both caches forget it.
func (e *env) allowOrigins(origins ...string) {
	e.t.Helper()
	ctx := auth.SystemContext(context.Background())
	if err := e.db.Client.AgentConfig.UpdateOneID(e.configID).SetAllowedOrigins(origins).Exec(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.resolver.Invalidate(e.configID)
	e.settings.Invalidate(e.configID)
}

// hostPage describes one customer page embedding the widget.
type hostPage struct {
	// css is extra page CSS (the hostile stylesheet).
	css string
	// init is the JavaScript object literal passed to GSVWidget.init; {{key}} and
	// {{config}} are replaced.
	init string
	// body is extra markup before the scripts.
	body string
	// head puts the loader and the init call in <head>, before <body> exists.
	head bool
}

// hostServer serves customer pages on a loopback origin of its own, distinct from the
// service's: path "/p/<name>" serves pages[name].
func (e *env) hostServer(pages map[string]hostPage) *httptest.Server {
	e.t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := pages[strings.TrimPrefix(r.URL.Path, "/p/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		init := p.init
		if init == "" {
			init = `{configId: "{{config}}", apiKey: "{{key}}"}`
		}
		init = strings.NewReplacer("{{config}}", string(e.configID), "{{key}}", e.pubKey).Replace(init)
		scripts := fmt.Sprintf("<script src=\"%s/widget/loader.js\"></script>\n<script>GSVWidget.init(%s);</script>",
			html.EscapeString(e.svc.URL), init)
		head, body := "", scripts
		if p.head {
			head, body = scripts, ""
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>customer page</title>
<style>body { font-family: serif; margin: 0; padding: 24px; background: #fafafa; } %s</style>
%s
</head><body>
<h1>A customer's page</h1>
<p>Some content of the host site. <a href="#" id="first-link">a link</a></p>
%s
%s
</body></html>`, p.css, head, p.body, body)
	}))
	e.t.Cleanup(srv.Close)
	return srv
}

func systemCtx() context.Context { return auth.SystemContext(context.Background()) }

type fakeVerifier struct{}

func (fakeVerifier) Verify(context.Context, string) (apikey.Record, apikey.Claims, error) {
	return apikey.Record{}, apikey.Claims{}, apikey.ErrUnknownKey
}

type fakeResolver struct{}

func (fakeResolver) Resolve(context.Context, pulid.ID) (gateway.Target, error) {
	return gateway.Target{}, gateway.ErrConfigNotFound
}
