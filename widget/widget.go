// Package widget is the embeddable chat widget: its static assets (loader.js, widget.js,
// widget.css, embedded with go:embed and served with ETags, gzip and cache headers), the
// public widget-config endpoint the widget reads its portal settings from, and in dev
// mode a demo page.
//
// A customer page embeds it with
//
//	<script src="https://HOST/widget/loader.js"></script>
//	<script>GSVWidget.init({configId: "cfg_...", apiKey: "ar_pk_live_..."})</script>
//
// loader.js is tiny and cached briefly (it is the URL customers paste, so a deploy must
// reach them within minutes); it points at content-addressed bundle URLs
// (/widget/v/<hash>/widget.js) that are cached for a year. The chat itself talks to the
// gateway's invoke route with the publishable key; this package never calls Langflow.
//
// Mount with Endpoints(), like the gateway's.
package widget

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

// Settings are the portal's widget settings of one config: everything here is shown to
// any visitor of the buyer's site, so it must never grow a secret (system prompt, tweaks).
type Settings struct {
	DisplayName  string
	Greeting     string
	AvatarURL    string
	Theme        string // light | dark | auto
	Position     string // bottom-right | bottom-left
	PrimaryColor string
	Title        string
}

// SettingsSource reads a config's widget settings. gateway.Target does not carry them
// (only the persona name), so they come from here; EntSettings reads them from the
// database. It returns gateway.ErrConfigNotFound for a config that does not exist.
type SettingsSource interface {
	WidgetSettings(ctx context.Context, configID pulid.ID) (Settings, error)
}

// Options are what the widget room needs.
type Options struct {
	// Verifier checks publishable keys; *apikey.Verifier implements it. Required.
	Verifier gateway.KeyVerifier
	// Resolver resolves the key's config: tenant, persona name and allowed origins. The
	// gateway's resolver is meant to be shared, so that both enforce the same origins
	// from the same cache. Required.
	Resolver gateway.Resolver
	// Settings reads the portal's widget settings (greeting, avatar, theme...). Optional:
	// without it the config endpoint answers the persona name and defaults only.
	Settings SettingsSource
	// Dev serves the demo page at /widget/demo, embedding DemoConfigID and DemoKey (the
	// seeded config and its publishable key).
	Dev          bool
	DemoConfigID string
	DemoKey      string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Widget serves the widget's routes. It is safe for concurrent use.
type Widget struct {
	o      Options
	assets *assets
	demo   []byte
}

// New checks the options and prepares the assets (hashes and gzip are computed once here,
// not per request).
func New(o Options) (*Widget, error) {
	if o.Verifier == nil || o.Resolver == nil {
		return nil, errors.New("widget: Verifier and Resolver are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a, err := loadAssets()
	if err != nil {
		return nil, err
	}
	w := &Widget{o: o, assets: a}
	if o.Dev {
		if w.demo, err = demoPage(o.DemoConfigID, o.DemoKey); err != nil {
			return nil, err
		}
	}
	return w, nil
}

var _ gateway.KeyVerifier = (*apikey.Verifier)(nil)

// Endpoint is one route, for a server that wraps each in its own instrumentation:
// mux.Handle(e.Pattern, instrument(e.Route, e.Handler)).
type Endpoint struct {
	// Pattern is an http.ServeMux pattern (method and path). GET patterns serve HEAD too.
	Pattern string
	// Route is the low-cardinality name for logs and metrics.
	Route   string
	Handler http.Handler
}

// Route names.
const (
	RouteLoader  = "/widget/loader.js"
	RouteBundle  = "/widget/widget.{js,css}"
	RouteVersion = "/widget/v/{version}/{file}"
	RouteConfig  = "/api/widget/config/{configId}"
	RouteDemo    = "/widget/demo"
)

// Paths of the bundle, relative to the service root.
const (
	pathLoader = "/widget/loader.js"
	pathJS     = "/widget/widget.js"
	pathCSS    = "/widget/widget.css"
)

// Endpoints lists the widget's routes; the demo page only in dev mode.
func (w *Widget) Endpoints() []Endpoint {
	cfg := http.HandlerFunc(w.serveConfig)
	eps := []Endpoint{
		{"GET " + pathLoader, RouteLoader, w.assets.handler(w.assets.loader, cacheShort)},
		// The unversioned names exist for the contract and for debugging; the
		// loader always uses the versioned ones.
		{"GET " + pathJS, RouteBundle, w.assets.handler(w.assets.js, cacheShort)},
		{"GET " + pathCSS, RouteBundle, w.assets.handler(w.assets.css, cacheShort)},
		{"GET /widget/v/{version}/{file}", RouteVersion, http.HandlerFunc(w.assets.serveVersioned)},
		{"GET /api/widget/config/{configId}", RouteConfig, cfg},
		{"OPTIONS /api/widget/config/{configId}", RouteConfig, http.HandlerFunc(w.serveConfigPreflight)},
	}
	if w.o.Dev {
		eps = append(eps, Endpoint{"GET " + RouteDemo, RouteDemo, http.HandlerFunc(w.serveDemo)})
	}
	return eps
}

// Routes mounts every endpoint on mux.
func (w *Widget) Routes(mux *http.ServeMux) {
	for _, e := range w.Endpoints() {
		mux.Handle(e.Pattern, e.Handler)
	}
}

// Handler is a mux holding only the widget's routes.
func (w *Widget) Handler() http.Handler {
	mux := http.NewServeMux()
	w.Routes(mux)
	return mux
}
