// Package tweaks decides which flow-component overrides a buyer may send. The plan's
// tweakable_fields open them: "Component-ID.field" opens {"Component-ID": {"field": v}},
// and "field" opens a flat {"field": v}. A field named "code" is refused wherever it
// appears, even if a plan lists it: custom components run their "code" field as Python
// on the runtime, so a tweak of it would be code execution on a machine every tenant
// shares. The gateway (per call) and the config mutation (saved tweaks) both use Check.
package tweaks

import (
	"slices"
	"sort"
	"strings"
)

// Forbidden is the field that can never be tweaked.
const Forbidden = "code"

// Violation names the first refused tweak: its path ("Component-ID.field") and whether
// it was refused because it touches code.
type Violation struct {
	Path string
	Code bool
}

// Check returns the first violation in tweaks (in a deterministic order), or nil.
func Check(tw map[string]any, allowed []string) *Violation {
	keys := make([]string, 0, len(tw))
	for k := range tw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := tw[k]
		if isForbidden(k) || containsForbidden(v, 0) {
			return &Violation{Path: k + forbiddenSuffix(k, v), Code: true}
		}
		nested, ok := v.(map[string]any)
		if !ok || slices.Contains(allowed, k) { // a flat field (possibly object-valued)
			if !slices.Contains(allowed, k) {
				return &Violation{Path: k}
			}
			continue
		}
		fields := make([]string, 0, len(nested))
		for f := range nested {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			if !slices.Contains(allowed, k+"."+f) {
				return &Violation{Path: k + "." + f}
			}
		}
	}
	return nil
}

// forbiddenSuffix points at a "code" field one level down, where it usually is.
func forbiddenSuffix(k string, v any) string {
	if isForbidden(k) {
		return ""
	}
	if m, ok := v.(map[string]any); ok {
		for f := range m {
			if isForbidden(f) {
				return "." + f
			}
		}
	}
	return ""
}

func isForbidden(k string) bool { return strings.EqualFold(strings.TrimSpace(k), Forbidden) }

// containsForbidden looks for a "code" key anywhere inside v. Depth is bounded by the
// JSON decoder already; the bound here keeps a hand-built value from recursing forever.
func containsForbidden(v any, depth int) bool {
	if depth > 64 {
		return true
	}
	switch t := v.(type) {
	case map[string]any:
		for k, inner := range t {
			if isForbidden(k) || containsForbidden(inner, depth+1) {
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
