package gateway

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Tweaks override flow component fields per run. The plan's tweakable_fields decide which
// a buyer may touch: "Component-ID.field" opens {"Component-ID": {"field": v}}, and
// "field" opens a flat {"field": v}. A field named "code" is refused wherever it appears,
// even if a plan lists it: custom components run their "code" field as Python on the
// runtime, so a tweak of it is remote code execution on a machine shared by every tenant.

// PersonaTweak is the tweak that carries the config's system prompt. By convention a
// flow that supports personas reads a flat "system_prompt" tweak (the echo runtime shows
// it); the gateway sends it whenever the config has a system prompt, and it is not subject
// to the plan's allowlist because it is the gateway's, not the caller's. Explicit tweaks
// (saved or per request, when the plan opens "system_prompt") override it.
const PersonaTweak = "system_prompt"

// forbiddenField is refused at any depth of any tweak.
const forbiddenField = "code"

// tweakError says why tweaks were refused; forbidden is a 403, otherwise a 400.
type tweakError struct {
	forbidden bool
	msg       string
}

// checkTweaks verifies tweaks against the allowlist and the "code" rule.
func checkTweaks(tweaks map[string]any, allowed []string) *tweakError {
	keys := make([]string, 0, len(tweaks))
	for k := range tweaks {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic messages
	for _, k := range keys {
		v := tweaks[k]
		if isForbiddenName(k) || containsForbidden(v, 0) {
			return &tweakError{forbidden: true, msg: fmt.Sprintf("tweak %q: the code field can never be tweaked", k)}
		}
		if nested, ok := v.(map[string]any); ok {
			if slices.Contains(allowed, k) {
				// A flat field whose value happens to be an object.
				continue
			}
			fields := make([]string, 0, len(nested))
			for f := range nested {
				fields = append(fields, f)
			}
			sort.Strings(fields)
			for _, f := range fields {
				if !slices.Contains(allowed, k+"."+f) {
					return &tweakError{forbidden: true, msg: fmt.Sprintf("tweak %q is not allowed by the plan", k+"."+f)}
				}
			}
			continue
		}
		if !slices.Contains(allowed, k) {
			return &tweakError{forbidden: true, msg: fmt.Sprintf("tweak %q is not allowed by the plan", k)}
		}
	}
	return nil
}

func isForbiddenName(k string) bool { return strings.EqualFold(strings.TrimSpace(k), forbiddenField) }

// containsForbidden looks for a "code" key anywhere inside v. depth is bounded by the JSON
// decoder already; the bound here only keeps a hand-built value from recursing forever.
func containsForbidden(v any, depth int) bool {
	if depth > 64 {
		return true
	}
	switch t := v.(type) {
	case map[string]any:
		for k, inner := range t {
			if isForbiddenName(k) || containsForbidden(inner, depth+1) {
				return true
			}
		}
	case []any:
		for _, inner := range t {
			if containsForbidden(inner, depth+1) {
				return true
			}
		}
	}
	return false
}

// mergeTweaks returns base overlaid with over, one level deep (component objects merge
// field by field, so a request can change one field of a component the config tweaks).
// Neither input is modified: base is shared through the resolver's cache.
func mergeTweaks(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		if m, ok := v.(map[string]any); ok {
			out[k] = cloneMap(m)
			continue
		}
		out[k] = v
	}
	for k, v := range over {
		om, overIsMap := v.(map[string]any)
		bm, baseIsMap := out[k].(map[string]any)
		if overIsMap && baseIsMap {
			for f, fv := range om {
				bm[f] = fv
			}
			continue
		}
		if overIsMap {
			out[k] = cloneMap(om)
			continue
		}
		out[k] = v
	}
	return out
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// buildTweaks is what goes to Langflow: the persona, the saved tweaks, then the request's.
// Only the caller's part and the saved part are checked (the persona tweak is ours); the
// merged set is checked rather than the request alone so a plan that closed a field
// since the buyer saved it is enforced too.
func buildTweaks(t *Target, request map[string]any) (map[string]any, *tweakError) {
	saved := t.Tweaks
	merged := mergeTweaks(saved, request)
	if err := checkTweaks(merged, t.TweakableFields); err != nil {
		return nil, err
	}
	if t.SystemPrompt != "" {
		if _, set := merged[PersonaTweak]; !set {
			merged[PersonaTweak] = t.SystemPrompt
		}
	}
	if len(merged) == 0 {
		return nil, nil
	}
	return merged, nil
}
