package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

// Middleware is the shape of every piece here, so they compose with Chain.
type Middleware = func(http.Handler) http.Handler

// Chain wraps h so that mws[0] is the outermost. The intended order is
// Chain(h, RequestIDMiddleware, AccessLog(l), Recover(l), LimitBody(n)): the id must
// exist before anything logs, the access log must see the 500 Recover writes,
// and Recover must catch panics from everything inside it.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

// RequestIDMiddleware takes the caller's X-Request-Id when it is safe to log and echo
// (1-64 of [A-Za-z0-9._-]), so ids propagate across a proxy or a
// portal; anything else is replaced by a fresh random id rather than trusted,
// because it ends up in log lines and response headers.
// (It is not named RequestID: that name reads the id from a context.)
func RequestIDMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validID(id, 64) {
			id = rand.Text()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

// routeKey holds a *string the access log reads after the request: the inner
// handler that knows the route pattern (Metrics.Instrument) fills it in,
// since the outer middleware runs before routing.
type routeKey struct{}

func withRouteSlot(ctx context.Context) (context.Context, *string) {
	slot := new(string)
	return context.WithValue(ctx, routeKey{}, slot), slot
}

// SetRoute records the route pattern of the current request for the access
// log. Metrics.Instrument calls it; handlers mounted without Instrument may.
func SetRoute(ctx context.Context, route string) {
	if slot, ok := ctx.Value(routeKey{}).(*string); ok {
		*slot = route
	}
}

// AccessLog writes one line per request: method, route, status, bytes,
// duration. It logs the route pattern, not the URL, because paths and query
// strings can carry keys and tokens; headers are never logged for the same
// reason (Authorization, x-api-key). The line is written in a defer so that
// aborted and panicking requests are logged too.
func AccessLog(logger *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ctx, slot := withRouteSlot(r.Context())
			r = r.WithContext(ctx)
			rw := wrapWriter(w)
			completed := false
			defer func() {
				route := *slot
				if route == "" {
					// http.ServeMux fills Pattern on the request it is
					// handed; this is that request when nothing in
					// between replaced it.
					route = r.Pattern
				}
				if route == "" {
					route = "unmatched"
				}
				status := rw.status
				if status == 0 && completed {
					status = http.StatusOK // net/http's implicit 200
				}
				// status 0: the handler aborted or panicked before writing.
				level := slog.LevelInfo
				if status >= 500 || status == 0 {
					level = slog.LevelWarn
				}
				logger.LogAttrs(r.Context(), level, "http request",
					slog.String("method", r.Method),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Int64("bytes", rw.bytes),
					slog.Duration("duration", time.Since(start)),
				)
			}()
			next.ServeHTTP(rw, r)
			completed = true
		})
	}
}

// Recover turns a handler panic into a logged error with a stack and, when
// nothing was written yet, a 500 JSON error, so one bad request never takes
// the process down. http.ErrAbortHandler is re-panicked: it is net/http's
// deliberate way to abort a response. If the response had already started,
// the connection is aborted too, because a truncated body with a 200 status
// would look like success to the client.
func Recover(logger *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := wrapWriter(w)
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("panic", fmt.Sprint(p)),
					slog.String("stack", string(debug.Stack())),
				)
				if rw.wroteHeader {
					panic(http.ErrAbortHandler)
				}
				apperr.WriteHTTP(rw, http.StatusInternalServerError, apperr.Internal, "internal error")
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

// LimitBody caps request bodies at n bytes. A declared Content-Length over
// the cap is refused at once with 413; otherwise reads past the cap fail and
// handlers map that to 413 with IsBodyTooLarge.
func LimitBody(n int64) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				apperr.WriteHTTP(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE",
					"request body exceeds "+strconv.FormatInt(n, 10)+" bytes")
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, n)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// IsBodyTooLarge reports whether err (possibly wrapped, e.g. by a JSON
// decoder) came from reading past LimitBody's cap.
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// statusWriter records the status and size of a response. It forwards
// Flush and Hijack because streaming responses (SSE invokes) and websocket
// subscriptions assert those interfaces directly, and Unwrap for
// http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

// wrapWriter reuses an existing statusWriter so stacked middleware share one
// view of what was written.
func wrapWriter(w http.ResponseWriter) *statusWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw
	}
	return &statusWriter{ResponseWriter: w}
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wroteHeader {
		w.status = http.StatusSwitchingProtocols
		w.wroteHeader = true
	}
	return conn, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
