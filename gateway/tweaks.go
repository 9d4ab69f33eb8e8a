package gateway

import (
	"fmt"
	"github.com/gsvdev/agentregistry/internal/tweaks"
	"slices"
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

// tweakError says why tweaks were refused; forbidden is a 403, otherwise a 400.
type tweakError struct {
	forbidden bool
	msg       string
}

// checkTweaks verifies tweaks against the allowlist and the "code" rule (internal/tweaks,
// shared with the config mutation so saved and per-call tweaks follow one rule).
func checkTweaks(tw map[string]any, allowed []string) *tweakError {
	v := tweaks.Check(tw, allowed)
	switch {
	case v == nil:
		return nil
	case v.Code:
		return &tweakError{forbidden: true, msg: fmt.Sprintf("tweak %q: the code field can never be tweaked", v.Path)}
	default:
		return &tweakError{forbidden: true, msg: fmt.Sprintf("tweak %q is not allowed by the plan", v.Path)}
	}
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
// VisitorTweaks carry the page's visitor to the flow as flat tweaks, only when the plan
// opens them: Langflow applies a flat tweak to every component with a field of that name
// (memory components keyed by user_id, say), so a page must not set one the provider
// did not mean to expose.
const (
	VisitorIDTweak   = "user_id"
	VisitorNameTweak = "user_name"
)

func buildTweaks(t *Target, request map[string]any, visitor *Visitor) (map[string]any, *tweakError) {
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
	if visitor != nil {
		if visitor.ID != "" && slices.Contains(t.TweakableFields, VisitorIDTweak) {
			merged[VisitorIDTweak] = visitor.ID
		}
		if visitor.Name != "" && slices.Contains(t.TweakableFields, VisitorNameTweak) {
			merged[VisitorNameTweak] = visitor.Name
		}
	}
	if len(merged) == 0 {
		return nil, nil
	}
	return merged, nil
}
