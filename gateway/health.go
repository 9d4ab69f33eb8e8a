package gateway

import (
	"context"
	"net/http"
)

// healthResponse says whether the gateway answers and whether the runtime is ready. It
// names no URL, version or error text: the route is public.
type healthResponse struct {
	Status  string        `json:"status"`
	Runtime runtimeHealth `json:"runtime"`
}

type runtimeHealth struct {
	Ready bool `json:"ready"`
}

// serveHealth answers 200 whenever the gateway itself can answer, and reports the
// runtime's readiness in the body: a Langflow outage must not make a load balancer take
// gateways (which still answer 503s with request ids, and meter) out of rotation.
func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Request-Id", g.requestID(r))
	ctx, cancel := context.WithTimeout(r.Context(), g.d.HealthTimeout)
	defer cancel()
	ready := g.d.Runtime.Ready(ctx) == nil
	writeJSON(w, http.StatusOK, healthResponse{Status: "ok", Runtime: runtimeHealth{Ready: ready}})
}
