package gateway

import (
	"github.com/gsvdev/agentregistry/internal/origin"
	"net/http"
)

// CORS of the gateway. Browsers call it from buyers' sites with publishable keys, so the
// answer to "may this origin read the response" depends on the config the key names,
// which a preflight (no credentials) cannot know on the invoke route: its preflight admits
// any origin, and the real response carries Access-Control-Allow-Origin only when the
// config lists the origin, so a page of another origin can send but never read.
// The Langflow-compatible route names the config in its path, so its preflight can
// already refuse foreign origins.

const (
	corsAllowHeaders = "Authorization, X-API-Key, Content-Type, Idempotency-Key, Accept"
	corsAllowMethods = "POST"
	// corsMaxAge lets browsers cache a preflight for 10 minutes.
	corsMaxAge    = "600"
	corsExposeHdr = "X-Request-Id, Retry-After, RateLimit, RateLimit-Policy, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
)

// writePreflight answers an OPTIONS preflight for origin.
func writePreflight(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	if origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Max-Age", corsMaxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}

// allowOrigin lets the browser read the response if origin is one of the config's.
func allowOrigin(h http.Header, o string, allowed []string) {
	h.Add("Vary", "Origin")
	if o != "" && origin.Allowed(o, allowed) {
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Expose-Headers", corsExposeHdr)
	}
}

// originAllowed is origin.Allowed: the one matcher the widget endpoint and the config
// validation share.
func originAllowed(o string, allowed []string) bool { return origin.Allowed(o, allowed) }
