package apperr

import (
	"encoding/json"
	"net/http"
)

// HTTPBody is the JSON shape of an error answered outside GraphQL:
// {"error":{"code":...,"message":...}}.
type HTTPBody struct {
	Error HTTPDetail `json:"error"`
}

// HTTPDetail is a machine-readable code and a human message.
type HTTPDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteHTTP writes an HTTPBody with the status. One writer keeps the errors of every
// middleware and plain handler the same shape.
func WriteHTTP(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// A Content-Length set for a body that was never sent would make the server wait for
	// or truncate the wrong amount.
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(HTTPBody{Error: HTTPDetail{Code: code, Message: message}})
}
