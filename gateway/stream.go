package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gsvdev/agentregistry/internal/langflow"
)

// Streaming answers are server-sent events, flushed one by one. The response starts
// (status 200, event-stream headers) with the first token, not before: a call that fails
// before Langflow produced anything gets a plain JSON error with its real status, and only
// failures after the start become an error event. The gateway's route sends
//
//	event: token / data: {"chunk": "..."}      as Langflow produces tokens
//	event: end   / data: <the JSON answer>     after the usage record is committed
//	event: error / data: {"code", "message"}   instead of end when anything failed
//
// and the compat route sends Langflow's own framing: {"event": "token", "data": {...}}
// JSON lines separated by blank lines, ending with {"event": "end", "data": {"result"}}.
// A Langflow stream that stops before its end event is an error event, never an end: a
// truncated answer must not look complete.

// errClientGone stops a stream whose caller disconnected.
var errClientGone = errors.New("gateway: client went away while streaming")

type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	format  format
	started bool
	failed  bool
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	// Proxies (nginx) buffer responses unless told not to, which would batch the tokens.
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	_ = s.rc.Flush()
}

// event writes one event and flushes it.
func (s *sseWriter) event(name string, data any) error {
	s.start()
	if s.failed {
		return errClientGone
	}
	var frame []byte
	if s.format == formatCompat {
		b, err := json.Marshal(map[string]any{"event": name, "data": data})
		if err != nil {
			return err
		}
		frame = append(b, '\n', '\n')
	} else {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		frame = make([]byte, 0, len(b)+len(name)+16)
		frame = append(frame, "event: "...)
		frame = append(frame, name...)
		frame = append(frame, "\ndata: "...)
		frame = append(frame, b...)
		frame = append(frame, '\n', '\n')
	}
	if _, err := s.w.Write(frame); err != nil {
		s.failed = true
		return errClientGone
	}
	if err := s.rc.Flush(); err != nil {
		s.failed = true
		return errClientGone
	}
	return nil
}

// errorEvent ends a started stream with the failure.
func (s *sseWriter) errorEvent(e *apiError) {
	if s.format == formatCompat {
		_ = s.event("error", map[string]any{"error": e.message, "code": e.code})
		return
	}
	_ = s.event("error", map[string]string{"code": e.code, "message": e.message})
}

// runStream calls Langflow streaming and relays its tokens.
func (c *call) runStream(req langflow.RunRequest) *apiError {
	c.sse = &sseWriter{w: c.w, rc: http.NewResponseController(c.w), format: c.format}
	onToken := func(chunk string) error {
		c.streamed.WriteString(chunk)
		return c.sse.event("token", map[string]string{"chunk": chunk})
	}
	res, err := c.g.d.Runtime.Stream(c.r.Context(), c.target.RuntimeFlowID, req, onToken)
	if err != nil {
		if errors.Is(err, errClientGone) {
			return canceled(err)
		}
		return runtimeError(err)
	}
	// The record is committed before the end event: a client that saw "end" was billed.
	if aerr := c.recordSuccess(res); aerr != nil {
		return aerr
	}
	var end any = c.nativeResponse(res)
	if c.format == formatCompat {
		end = map[string]any{"result": compatResponse(c.input, res.Text)}
	}
	if err := c.sse.event("end", end); err != nil {
		c.g.d.Logger.InfoContext(c.r.Context(), "gateway: client left before the end event", "request_id", c.requestID)
	}
	return nil
}
