package widget

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

// The public config endpoint, GET /api/widget/config/{configId}: what the portal set for
// the widget (persona name, greeting, avatar, theme, position, colour, title), read by the
// widget from the buyer's pages with the publishable key. Its checks are the gateway's
// for the same key, so that a page that can read the config can also chat and one that
// cannot gets a refusal up front: the key must verify, be publishable, name this very
// config, and the call must come from one of the config's allowed origins. Errors are
// the gateway's JSON shape and codes.

// configResponse is the endpoint's answer. Every field is public by design.
type configResponse struct {
	ConfigID     string `json:"config_id"`
	Name         string `json:"name"`
	Title        string `json:"title"`
	Greeting     string `json:"greeting"`
	AvatarURL    string `json:"avatar_url"`
	Theme        string `json:"theme"`
	Position     string `json:"position"`
	PrimaryColor string `json:"primary_color"`
}

// CORS of the config endpoint. Unlike the gateway's invoke route the path names the
// config, so even the preflight can refuse an origin the config does not list.
const (
	corsAllowHeaders = "Authorization, X-API-Key, Accept"
	corsAllowMethods = "GET"
	corsMaxAge       = "600"
)

func (w *Widget) serveConfig(rw http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	h := rw.Header()
	h.Add("Vary", "Origin")
	reqID := requestID(rw)
	fail := func(status int, code, msg string, cause error) {
		if cause != nil {
			w.o.Logger.InfoContext(ctx, "widget: config refused", "request_id", reqID, "status", status,
				"code", code, "reason", cause.Error())
		}
		writeError(rw, status, code, msg, reqID)
	}

	key, err := extractKey(r)
	if err != nil {
		fail(http.StatusUnauthorized, gateway.CodeUnauthenticated, "missing or invalid API key", err)
		return
	}
	rec, _, err := w.o.Verifier.Verify(ctx, key)
	switch {
	case errors.Is(err, context.Canceled):
		return // nobody is listening
	case isKeyError(err):
		// One message for every reason, like the gateway: a caller cannot tell a revoked
		// key from a forged one.
		fail(http.StatusUnauthorized, gateway.CodeUnauthenticated, "missing or invalid API key", err)
		return
	case err != nil:
		fail(http.StatusServiceUnavailable, gateway.CodeRuntimeUnavailable, "the key store is unavailable, try again", err)
		return
	}
	if rec.Kind != apikey.KindPublishable || !rec.Allows(apikey.ScopeWidgetInvoke) {
		// Secret keys must never sit in a web page: refusing them here stops a buyer
		// from shipping one in the widget snippet by mistake.
		fail(http.StatusForbidden, gateway.CodeForbidden, "the widget needs a publishable key (ar_pk_live_...)", nil)
		return
	}
	if r.PathValue("configId") != string(rec.ConfigID) {
		fail(http.StatusForbidden, gateway.CodeForbidden, "this key does not belong to this config", nil)
		return
	}
	// loadFailed answers a failed config or settings lookup; it reports whether it did.
	loadFailed := func(err error) bool {
		switch {
		case err == nil:
			return false
		case errors.Is(err, context.Canceled): // nobody is listening
		case errors.Is(err, gateway.ErrConfigNotFound):
			fail(http.StatusNotFound, gateway.CodeNotFound, "agent configuration not found", nil)
		default:
			fail(http.StatusServiceUnavailable, gateway.CodeRuntimeUnavailable, "the agent configuration could not be loaded, try again", err)
		}
		return true
	}
	t, err := w.o.Resolver.Resolve(ctx, rec.ConfigID)
	switch {
	case loadFailed(err):
		return
	case t.TenantID != rec.TenantID:
		// Never serve across tenants, and never say more than "not found".
		fail(http.StatusNotFound, gateway.CodeNotFound, "agent configuration not found",
			errors.New("key tenant does not own the config"))
		return
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin != "":
		if !originAllowed(origin, t.AllowedOrigins) {
			fail(http.StatusForbidden, gateway.CodeForbidden, "origin not allowed for this key", nil)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "X-Request-Id")
	case r.Header.Get("Sec-Fetch-Site") == "same-origin":
		// Browsers send no Origin on same-origin GETs: this is one of the service's
		// own pages (the demo), which may read public settings. Its chat calls are
		// POSTs, which carry Origin, and the gateway checks those.
	default:
		fail(http.StatusForbidden, gateway.CodeForbidden, "a publishable key may only be used from a browser on an allowed origin", nil)
		return
	}

	resp := configResponse{ConfigID: string(t.ConfigID), Name: t.DisplayName, Theme: "light", Position: "bottom-right"}
	if w.o.Settings != nil {
		s, err := w.o.Settings.WidgetSettings(ctx, t.ConfigID)
		if loadFailed(err) {
			return
		}
		if s.DisplayName != "" {
			resp.Name = s.DisplayName
		}
		resp.Greeting, resp.Title = s.Greeting, s.Title
		resp.AvatarURL = safeURL(s.AvatarURL)
		resp.PrimaryColor = safeColor(s.PrimaryColor)
		if s.Theme == "dark" || s.Theme == "auto" {
			resp.Theme = s.Theme
		}
		if s.Position == "bottom-left" {
			resp.Position = s.Position
		}
	}
	// Portal edits should show within a minute; "private" because the answer depends on
	// the key header, which shared caches do not key on.
	h.Set("Cache-Control", "private, max-age=60")
	h.Add("Vary", "Authorization")
	h.Add("Vary", "X-API-Key")
	writeJSON(rw, http.StatusOK, "", resp)
}

// serveConfigPreflight admits the origins of the config the path names, and nobody else.
// It carries no key, so it reveals nothing the real request would not: a foreign page
// learns only that it may not ask.
func (w *Widget) serveConfigPreflight(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	id := pulid.ID(r.PathValue("configId"))
	if origin == "" || !id.Valid() {
		rw.WriteHeader(http.StatusForbidden)
		return
	}
	t, err := w.o.Resolver.Resolve(r.Context(), id)
	switch {
	case errors.Is(err, gateway.ErrConfigNotFound):
		rw.WriteHeader(http.StatusNotFound)
		return
	case err != nil:
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	case !originAllowed(origin, t.AllowedOrigins):
		rw.WriteHeader(http.StatusForbidden)
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	rw.WriteHeader(http.StatusNoContent)
}

// isKeyError reports whether the verifier refused the key itself (a 401), as opposed to
// failing to decide (a 503).
func isKeyError(err error) bool {
	for _, e := range []error{apikey.ErrMalformed, apikey.ErrBadSignature, apikey.ErrExpired,
		apikey.ErrWrongKind, apikey.ErrUnknownKey, apikey.ErrRevoked, apikey.ErrNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// extractKey takes the key from "Authorization: Bearer <key>" or "X-API-Key"; both may be
// present only if they agree (the gateway's rule).
func extractKey(r *http.Request) (string, error) {
	var bearer string
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", errors.New("Authorization is not a Bearer credential")
		}
		bearer = strings.TrimSpace(token)
	}
	header := strings.TrimSpace(r.Header.Get("X-API-Key"))
	switch {
	case bearer != "" && header != "" && bearer != header:
		return "", errors.New("Authorization and X-API-Key carry different keys")
	case bearer != "":
		return bearer, nil
	case header != "":
		return header, nil
	}
	return "", errors.New("no API key in Authorization or X-API-Key")
}

// requestID is the id the server's middleware put on the response, or a fresh one when
// the widget runs without it (tests, another server).
func requestID(w http.ResponseWriter) string {
	if id := w.Header().Get("X-Request-Id"); id != "" {
		return id
	}
	id := "req_" + rand.Text()
	w.Header().Set("X-Request-Id", id)
	return id
}

// errorBody is the gateway's JSON error shape.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func writeError(w http.ResponseWriter, status int, code, msg, reqID string) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.RequestID = code, msg, reqID
	writeJSON(w, status, "no-store", b)
}

func writeJSON(w http.ResponseWriter, status int, cacheControl string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"INTERNAL","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if cacheControl != "" {
		h.Set("Cache-Control", cacheControl)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// safeURL keeps http(s) URLs only: the avatar becomes an <img src>, and a javascript: or
// data: URL has no business there.
func safeURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return u.String()
}

// colorPattern admits hex colours, rgb()/hsl() with plain numbers, and colour names: the
// value becomes a CSS custom property, so nothing that could close it (";", "}") passes.
var colorPattern = regexp.MustCompile(`^(#[0-9a-fA-F]{3,8}|(rgb|rgba|hsl|hsla)\([0-9.,%\s/]+\)|[a-zA-Z]{3,30})$`)

func safeColor(s string) string {
	s = strings.TrimSpace(s)
	if !colorPattern.MatchString(s) {
		return ""
	}
	return s
}
