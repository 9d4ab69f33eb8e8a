package gateway

import (
	"net/http"
	"net/url"
	"strings"
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
func allowOrigin(h http.Header, origin string, allowed []string) {
	h.Add("Vary", "Origin")
	if origin != "" && originAllowed(origin, allowed) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", corsExposeHdr)
	}
}

// originAllowed reports whether origin (as a browser sends it: scheme://host[:port])
// matches one of the allowed entries: an exact origin, or "scheme://*.domain[:port]" for
// any subdomain of domain (not domain itself, which must be listed on its own). Scheme and
// host compare case-insensitively; ports must match exactly. "null" and anything that is
// not a plain origin never match.
func originAllowed(origin string, allowed []string) bool {
	o, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for _, a := range allowed {
		p, ok := parseOrigin(strings.TrimRight(strings.TrimSpace(a), "/"))
		if !ok || p.scheme != o.scheme || p.port != o.port {
			continue
		}
		if suffix, wild := strings.CutPrefix(p.host, "*."); wild {
			if suffix != "" && !strings.Contains(suffix, "*") && strings.HasSuffix(o.host, "."+suffix) &&
				len(o.host) > len(suffix)+1 {
				return true
			}
			continue
		}
		if p.host == o.host {
			return true
		}
	}
	return false
}

type originParts struct{ scheme, host, port string }

func parseOrigin(s string) (originParts, bool) {
	if s == "" || s == "null" || len(s) > 2048 {
		return originParts{}, false
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || rest == "" || strings.ContainsAny(rest, "/?#@ \t") {
		return originParts{}, false
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return originParts{}, false
	}
	// url.Parse with a "*" label would fail on some forms; split the port by hand.
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return originParts{}, false
		}
	}
	if host == "" {
		return originParts{}, false
	}
	if _, err := url.Parse(scheme + "://" + strings.Replace(host, "*", "x", 1)); err != nil {
		return originParts{}, false
	}
	return originParts{scheme: scheme, host: strings.ToLower(host), port: port}, true
}
