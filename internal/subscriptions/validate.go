package subscriptions

import (
	"fmt"
	"net/url"
	"regexp"

	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/origin"
	"github.com/gsvdev/agentregistry/internal/tweaks"
)

var colorPattern = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// checkOrigins accepts browser origins only (see origin.Validate).
func checkOrigins(field string, origins []string) error {
	if len(origins) > 50 {
		return apperr.Invalid(field, "at most 50 allowed origins")
	}
	for i, o := range origins {
		if err := origin.Validate(o); err != nil {
			return apperr.Invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not an origin: %s", o, err)
		}
	}
	return nil
}

func checkAvatar(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return apperr.Invalid("input.avatarURL", "avatar must be an http(s) URL")
	}
	return nil
}

// checkTweaks accepts saved tweaks the plan opens (internal/tweaks: the gateway applies
// the same rule to every call).
func checkTweaks(field string, tw map[string]any, allowed []string) error {
	v := tweaks.Check(tw, allowed)
	switch {
	case v == nil:
		return nil
	case v.Code:
		return apperr.Invalid(field+"."+v.Path, "the code field of a component can never be tweaked")
	default:
		return apperr.Invalid(field+"."+v.Path, "the plan does not let buyers set %s", v.Path)
	}
}
