package gateway

import (
	"errors"
	"net/http"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// The Langflow-compatible route, POST /api/v1/run/{config_id}, lets Langflow's own clients
// (the langflow-embedded-chat web component above all) talk to the gateway unchanged: the
// page's host_url points at the gateway, flow_id is the config id and api_key one of our
// keys (a publishable key for a web page). Requests are Langflow's body, answers are
// Langflow's shape built by the gateway (never Langflow's raw answer, which can carry the
// flow's internals), errors are {"detail": "..."}. The pipeline is the invoke route's.

// compatError is Langflow's (FastAPI's) error shape.
type compatError struct {
	Detail string `json:"detail"`
}

// compatResponse is Langflow's run answer for one chat output, with the caller's
// session id (the namespaced one stays between the gateway and Langflow).
func compatResponse(in callInput, text string) map[string]any {
	return map[string]any{
		"session_id": in.session,
		"outputs": []any{map[string]any{
			"inputs": map[string]any{"input_value": in.input},
			"outputs": []any{map[string]any{
				"results": map[string]any{"message": map[string]any{
					"text": text, "sender": "Machine", "sender_name": "AI", "session_id": in.session,
					"data": map[string]any{"text": text, "sender": "Machine", "sender_name": "AI", "session_id": in.session},
				}},
				"artifacts": map[string]any{"message": text, "sender": "Machine", "sender_name": "AI", "type": "object"},
				"outputs":   map[string]any{"message": map[string]any{"message": text, "type": "text"}},
				"messages": []any{map[string]any{
					"message": text, "sender": "Machine", "sender_name": "AI", "session_id": in.session,
					"component_id": "ChatOutput", "type": "text",
				}},
				"component_display_name": "Chat Output",
				"component_id":           "ChatOutput",
			}},
		}},
	}
}

// serveCompatPreflight answers the compat route's preflight. Unlike the invoke route, the
// path names the config, so a foreign origin is refused here already. A preflight carries
// no key, so an unknown config gets the same refusal as a foreign origin: anyone could
// otherwise tell which config ids exist.
func (g *Gateway) serveCompatPreflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Request-Id", g.requestID(r))
	refuse := func() {
		w.Header().Add("Vary", "Origin")
		writeJSON(w, http.StatusForbidden, compatError{Detail: "origin not allowed"})
	}
	origin := r.Header.Get("Origin")
	id := pulid.ID(r.PathValue("config_id"))
	if origin == "" || !id.Valid() {
		refuse()
		return
	}
	t, err := g.d.Resolver.Resolve(r.Context(), id)
	switch {
	case errors.Is(err, ErrConfigNotFound):
		refuse()
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, compatError{Detail: "try again later"})
		return
	}
	if !originAllowed(origin, t.AllowedOrigins) {
		refuse()
		return
	}
	writePreflight(w, origin)
}

// servePreflight answers the invoke route's preflight for any origin; see cors.go for why
// that is safe.
func (g *Gateway) servePreflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Request-Id", g.requestID(r))
	writePreflight(w, r.Header.Get("Origin"))
}
