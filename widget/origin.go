package widget

import "github.com/gsvdev/agentregistry/internal/origin"

// originAllowed is the gateway's matcher (internal/origin), so the widget's config
// endpoint and the invoke path accept exactly the same pages.
func originAllowed(o string, allowed []string) bool { return origin.Allowed(o, allowed) }
