package widget

import (
	"net/url"
	"strings"
)

// originAllowed reports whether origin (scheme://host[:port], as browsers send it) matches
// one of the config's allowed entries: an exact origin, or "scheme://*.domain[:port]" for
// any subdomain of domain. It must decide exactly as the gateway does (gateway/cors.go,
// unexported there), or a page could read the widget's config and then be refused every
// answer, or the reverse; TestOriginMatchesGateway pins the two together through the
// gateway's own responses.
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
