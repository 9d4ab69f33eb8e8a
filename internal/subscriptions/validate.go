package subscriptions

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

var colorPattern = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// checkOrigins accepts browser origins only: scheme (http or https) and host, with an
// optional port; no path, query, user info or wildcard, except the explicit
// "https://*.example.com" form for every subdomain of one domain.
func checkOrigins(field string, origins []string) error {
	if len(origins) > 50 {
		return apperr.Invalid(field, "at most 50 allowed origins")
	}
	for i, o := range origins {
		if err := checkOrigin(o); err != nil {
			return apperr.Invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not an origin: %s", o, err)
		}
	}
	return nil
}

func checkOrigin(o string) error {
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
	return nil
}

var hostPattern = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

func checkAvatar(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return apperr.Invalid("input.avatarURL", "avatar must be an http(s) URL")
	}
	return nil
}

// CheckTweaks accepts tweaks whose every key is opened by the plan: flat keys
// ("temperature") or one level of component nesting ({"Component-ID": {"field": v}},
// allowed as "Component-ID.field"). A "code" field is never accepted, whatever the plan
// says: it is Python that runs on the runtime.
func CheckTweaks(field string, tweaks map[string]any, allowed []string) error {
	for k, v := range tweaks {
		if nested, ok := v.(map[string]any); ok {
			for f := range nested {
				if f == "code" || !slices.Contains(allowed, k+"."+f) {
					return apperr.Invalid(field+"."+k+"."+f, "the plan does not let buyers set %s.%s", k, f)
				}
			}
			continue
		}
		if k == "code" || !slices.Contains(allowed, k) {
			return apperr.Invalid(field+"."+k, "the plan does not let buyers set %s", k)
		}
	}
	return nil
}
