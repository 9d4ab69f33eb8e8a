package langflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is the stable class of a Langflow failure. Its string value is a
// machine code (e.g. "timeout") fit for usage records and metrics labels.
// Kinds are constants, not package variables, so nobody can reassign them,
// and they work as errors.Is targets: errors.Is(err, langflow.ErrTimeout).
type Kind string

// The failure classes the gateway maps to its own responses. Each maps to one
// HTTP status (see StatusCode) so every caller reports the same thing.
const (
	// ErrBadRequest: Langflow (or local validation) rejected the input (4xx).
	ErrBadRequest Kind = "bad_request"
	// ErrNotFound: the flow id or endpoint name is unknown to Langflow (404).
	ErrNotFound Kind = "not_found"
	// ErrUpstream: Langflow failed (5xx), refused our credentials, or answered
	// something we cannot parse; the caller should see 502.
	ErrUpstream Kind = "upstream_error"
	// ErrUnavailable: Langflow cannot be reached, is overloaded, or the circuit
	// breaker is open; the caller should see 503.
	ErrUnavailable Kind = "unavailable"
	// ErrTimeout: the run did not finish within its deadline (504).
	ErrTimeout Kind = "timeout"
	// ErrStreamIncomplete: a streamed run closed before its "end" event. A
	// truncated stream must not be mistaken for a complete (short) answer.
	ErrStreamIncomplete Kind = "stream_incomplete"
	// ErrCanceled: the caller canceled the context. It is not Langflow's fault,
	// so it never counts against the circuit breaker.
	ErrCanceled Kind = "canceled"
)

// Error makes a Kind usable as an errors.Is target and describes it.
func (k Kind) Error() string { return "langflow: " + k.describe() }

func (k Kind) describe() string {
	switch k {
	case ErrBadRequest:
		return "bad request"
	case ErrNotFound:
		return "flow not found"
	case ErrUpstream:
		return "upstream error"
	case ErrUnavailable:
		return "unavailable"
	case ErrTimeout:
		return "timeout"
	case ErrStreamIncomplete:
		return "stream ended before the end event"
	case ErrCanceled:
		return "canceled"
	}
	return string(k)
}

// KindOf returns the Kind of an error from this package, or "" for any
// other error (including a Stream callback's own error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var k Kind
	if errors.As(err, &k) {
		return k
	}
	return ""
}

// maxDetailRunes caps Error.Detail: details end up in API responses and logs,
// where a multi-kilobyte Python exception is noise and a leak risk.
const maxDetailRunes = 200

// Error is every error the client returns (except errors returned by a
// Stream onToken callback, which pass through untouched).
type Error struct {
	// Kind is the stable class; errors.Is(err, Kind) matches it.
	Kind Kind
	// Op names the client operation ("run", "stream", "create flow", ...).
	Op string
	// Status is the HTTP status Langflow answered with; 0 when no response
	// was received (connect error, timeout, breaker open).
	Status int
	// Detail is a short, sanitized, human-readable reason: Python tracebacks
	// stripped, the API key redacted, at most ~200 characters. Safe to show
	// to API callers.
	Detail string

	cause error
}

// Error never includes the raw response body or the API key: only Op, Kind,
// Status and the sanitized Detail.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("langflow ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind.describe())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Is matches the error's Kind, so callers can test the class without a type
// assertion.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Unwrap exposes the underlying cause (e.g. context.DeadlineExceeded) for
// errors.Is checks; it is never part of Error().
func (e *Error) Unwrap() error { return e.cause }

// StatusCode is the HTTP status the gateway should answer with for err.
// It returns 500 for errors that did not come from this package, and 499
// (client closed request) for cancellations.
func StatusCode(err error) int {
	k := KindOf(err)
	if k == "" {
		return http.StatusInternalServerError
	}
	switch k {
	case ErrBadRequest:
		return http.StatusBadRequest
	case ErrNotFound:
		return http.StatusNotFound
	case ErrUnavailable:
		return http.StatusServiceUnavailable
	case ErrTimeout:
		return http.StatusGatewayTimeout
	case ErrCanceled:
		return 499
	default: // ErrUpstream, ErrStreamIncomplete
		return http.StatusBadGateway
	}
}

// kindForStatus classifies a non-2xx Langflow answer.
func kindForStatus(status int) Kind {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		// 504 usually comes from a proxy in front of Langflow giving up: to
		// the caller that is the same as our own deadline expiring.
		return ErrTimeout
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return ErrUnavailable
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Our Langflow key is wrong: not the end user's fault, so not a 4xx
		// for them.
		return ErrUpstream
	case status >= 400 && status < 500:
		return ErrBadRequest
	default:
		return ErrUpstream
	}
}

// classifyTransport turns an error from http.Client.Do or from reading a
// body into an *Error. ctx is the request's own context: its error tells a
// deadline (ours or the caller's) from a cancellation.
func classifyTransport(ctx context.Context, op string, err error, redact func(string) string) *Error {
	var le *Error
	if errors.As(err, &le) {
		return le
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return &Error{Kind: ErrTimeout, Op: op, Detail: "langflow did not answer before the deadline", cause: cerr}
		}
		return &Error{Kind: ErrCanceled, Op: op, Detail: "request canceled by the caller", cause: cerr}
	}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error repeats method and URL; the inner error is what matters.
		inner = ue.Err
	}
	detail := sanitize(inner.Error(), redact)
	var op2 *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &op2) && op2.Op == "dial", errors.As(err, &dnsErr):
		// Nothing was sent: Langflow is down or unreachable.
		return &Error{Kind: ErrUnavailable, Op: op, Detail: detail, cause: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Kind: ErrTimeout, Op: op, Detail: detail, cause: err}
	}
	return &Error{Kind: ErrUpstream, Op: op, Detail: detail, cause: err}
}

// tracebackMarker starts a Python traceback; everything from it on is
// internal (file paths, code, locals) and never forwarded.
const tracebackMarker = "Traceback (most recent call last)"

// parseDetail extracts a short message from a Langflow error body. Langflow
// (FastAPI) answers {"detail": X} where X is a string, a string holding JSON,
// an array (validation errors) or an object; anything else falls back to the
// body text or the HTTP status text.
func parseDetail(status int, contentType string, body []byte, redact func(string) string) string {
	var msg string
	var env map[string]json.RawMessage
	if json.Unmarshal(body, &env) == nil && env != nil {
		if d, ok := env["detail"]; ok {
			msg = detailText(d, 0)
		} else {
			msg = detailText(body, 0)
		}
	} else if json.Valid(body) {
		msg = detailText(body, 0)
	} else if !strings.Contains(strings.ToLower(contentType), "html") {
		// Plain-text bodies (proxies, uvicorn) are usable; HTML error pages
		// are not.
		msg = string(body)
	}
	msg = sanitize(msg, redact)
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
	}
	return msg
}

// detailText renders one detail value. depth bounds recursion through
// detail strings that contain JSON that contain details.
func detailText(raw json.RawMessage, depth int) string {
	if depth > 4 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	return valueText(v, depth)
}

func valueText(v any, depth int) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		s := strings.TrimSpace(t)
		if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") || strings.HasPrefix(s, `"`) {
			// Langflow sometimes json.dumps() a dict into the detail string.
			if json.Valid([]byte(s)) {
				return detailText(json.RawMessage(s), depth+1)
			}
		}
		return t
	case []any:
		parts := make([]string, 0, len(t))
		for _, item := range t {
			if p := itemText(item, depth); p != "" {
				parts = append(parts, p)
			}
			if len(parts) == 5 {
				break
			}
		}
		return strings.Join(parts, "; ")
	case map[string]any:
		for _, k := range []string{"message", "msg", "error", "detail", "text", "exception", "reason"} {
			if inner, ok := t[k]; ok {
				if s := valueText(inner, depth+1); s != "" {
					return s
				}
			}
		}
		// No known key: show the object compactly, minus anything that
		// looks like a traceback or stack.
		keys := make([]string, 0, len(t))
		for k := range t {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "traceback") || strings.Contains(lk, "stack") {
				continue
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+": "+scalarText(t[k]))
		}
		return strings.Join(parts, ", ")
	default:
		return scalarText(t)
	}
}

// itemText renders one entry of a detail array; FastAPI validation errors are
// {"loc": [...], "msg": "...", "type": "..."}.
func itemText(item any, depth int) string {
	m, ok := item.(map[string]any)
	if !ok {
		return valueText(item, depth+1)
	}
	msg := valueText(m["msg"], depth+1)
	if msg == "" {
		return valueText(m, depth+1)
	}
	if loc, ok := m["loc"].([]any); ok && len(loc) > 0 {
		parts := make([]string, 0, len(loc))
		for _, l := range loc {
			parts = append(parts, scalarText(l))
		}
		return strings.Join(parts, ".") + ": " + msg
	}
	return msg
}

func scalarText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return "null"
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

// sanitize makes text safe and short: the traceback and everything after it
// go, the API key is redacted, control characters and runs of whitespace
// collapse to single spaces, and the result is capped at maxDetailRunes.
func sanitize(s string, redact func(string) string) string {
	if i := strings.Index(s, tracebackMarker); i >= 0 {
		s = s[:i]
	}
	if redact != nil {
		s = redact(s)
	}
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	out := strings.TrimRight(b.String(), " :;,-")
	if utf8.RuneCountInString(out) > maxDetailRunes {
		rs := []rune(out)
		out = strings.TrimRight(string(rs[:maxDetailRunes-1]), " ") + "…"
	}
	return out
}
