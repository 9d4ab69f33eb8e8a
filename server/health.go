package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"time"
)

// Healthz is the liveness probe: the process is up and serving HTTP. It
// checks no dependencies, so a database outage does not make the
// orchestrator restart healthy replicas.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// Readyz is the readiness probe; see ReadyzWithLog.
func Readyz(checks map[string]func(context.Context) error, timeout time.Duration) http.Handler {
	return ReadyzWithLog(checks, timeout, nil)
}

// ReadyzWithLog runs every check concurrently under one timeout and answers
// 200 {"status":"ok"} when all pass, else 503
// {"status":"unavailable","failed":[names]}. The response names failed checks
// only: error text (hosts, DSNs, driver messages) is for the log, not for an
// unauthenticated endpoint. logger may be nil.
func ReadyzWithLog(checks map[string]func(context.Context) error, timeout time.Duration, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		type result struct {
			name string
			err  error
		}
		// Buffered so a check that ignores ctx and finishes late does not
		// block forever on send after we stopped waiting.
		results := make(chan result, len(checks))
		for name, check := range checks {
			go func() { results <- result{name, check(ctx)} }()
		}
		failed := []string{}
		pending := make(map[string]bool, len(checks))
		for name := range checks {
			pending[name] = true
		}
		for len(pending) > 0 {
			select {
			case res := <-results:
				delete(pending, res.name)
				if res.err != nil {
					failed = append(failed, res.name)
					if logger != nil {
						logger.LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
							slog.String("check", res.name), slog.String("error", res.err.Error()))
					}
				}
			case <-ctx.Done():
				for name := range pending {
					failed = append(failed, name)
					if logger != nil {
						logger.LogAttrs(r.Context(), slog.LevelWarn, "readiness check timed out",
							slog.String("check", name), slog.Duration("timeout", timeout))
					}
				}
				pending = nil
			}
		}
		if len(failed) > 0 {
			sort.Strings(failed)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	// Probes must see the current state, never a cached one.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
