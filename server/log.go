package server

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

type requestIDKey struct{}

// WithRequestID returns a context carrying the request id, so every log line
// written with it can be correlated with the access log line and the id the
// client saw in X-Request-Id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id stored by WithRequestID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewLogger builds the process logger. level is debug|info|warn|error and
// format json|text (LoadConfig has validated both; anything else falls back
// to info/json rather than failing at this late point). Records logged with a
// context (InfoContext, LogAttrs, ...) carry request_id when the context has
// one, so room code gets correlation without passing ids around.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	lvl, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if strings.EqualFold(format, "text") {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewRequestIDHandler(h))
}

// NewRequestIDHandler wraps h so records logged with a context that holds a
// request id gain a request_id attribute. Exported so tests and other
// handlers (e.g. a tee) can reuse it.
func NewRequestIDHandler(h slog.Handler) slog.Handler {
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			// Clone: the record may be shared with other handlers.
			r = r.Clone()
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs and WithGroup must re-wrap, or loggers derived with With/WithGroup
// would silently lose the request id. Inside a group the id is nested under
// that group: slog offers no way to add a top-level attribute there.
func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
