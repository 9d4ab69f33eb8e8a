// Package origin matches browser origins against a config's allowed origins, and checks
// that what a buyer enters as an allowed origin is one. The gateway, the widget endpoint
// and the config mutations share it, so what is accepted is exactly what is matched.
package origin

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// Allowed reports whether origin (as a browser sends it: scheme://host[:port]) matches
// one of the allowed entries: an exact origin, or "scheme://*.domain[:port]" for any
// subdomain of domain (not domain itself, which must be listed on its own). Scheme and
// host compare case-insensitively; ports must match exactly. "null" and anything that is
// not a plain origin never match.
func Allowed(origin string, allowed []string) bool {
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

// Validate accepts what a buyer may list as an allowed origin: scheme (http or https)
// and host, with an optional port; no path, query, user info or wildcard, except the
// explicit "https://*.example.com" form for every subdomain of one domain.
func Validate(o string) error {
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Host == "":
		return fmt.Errorf("use scheme://host[:port]")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme must be http or https")
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "/"):
		return fmt.Errorf("an origin has no path, query or user info")
	}
	host := u.Hostname()
	if strings.Contains(host, "*") {
		rest, ok := strings.CutPrefix(host, "*.")
		if !ok || strings.Contains(rest, "*") || !strings.Contains(rest, ".") {
			return fmt.Errorf(`the only wildcard form is "*.example.com"`)
		}
		host = rest
	}
	if net.ParseIP(host) == nil && !hostPattern.MatchString(host) {
		return fmt.Errorf("invalid host")
	}
	if _, ok := parseOrigin(o); !ok {
		return fmt.Errorf("use scheme://host[:port]")
	}
	return nil
}

var hostPattern = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
