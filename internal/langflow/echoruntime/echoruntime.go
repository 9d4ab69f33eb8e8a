// Package echoruntime is a Langflow-compatible HTTP runtime that answers
// every run with "echo: <input>". It is both the built-in runtime of --dev
// mode (when no LANGFLOW_URL is set) and the fake Langflow of the tests, so
// the two can never drift apart. It reproduces Langflow's response shapes
// (run, streamed run, flow create/delete, health), and offers per-instance
// fault injection for tests.
package echoruntime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configures a Runtime.
type Options struct {
	// APIKey, when set, must arrive as x-api-key on API routes (not on the
	// health routes, which Langflow leaves public); otherwise 401.
	APIKey string
	// TokenDelay pauses between streamed tokens, to make streaming visible
	// in the dev UI and to test slow streams.
	TokenDelay time.Duration
	// StrictFlows answers 404 for runs of flows that were not created
	// through POST /api/v1/flows/. Off by default so --dev can run any id.
	StrictFlows bool
	// ReportUsage adds properties.usage {input_tokens, output_tokens} to the
	// answer message, as Langflow does for models that report usage.
	ReportUsage bool
}

// Fault makes the runtime misbehave. Faults apply to API routes whose path
// starts with PathPrefix (all API routes when empty) and never to the
// health routes unless PathPrefix names them.
type Fault struct {
	// PathPrefix limits the fault, e.g. "/api/v1/run/".
	PathPrefix string
	// Status, when non-zero, is answered instead of the normal response,
	// with body {"detail": Detail} (or RawBody when set).
	Status int
	// Detail is the value of "detail": a string, a string holding JSON, a
	// []any, a map[string]any, or a string containing a Python traceback.
	Detail any
	// RawBody replaces the JSON error body (e.g. an HTML proxy page).
	RawBody string
	// Delay waits before answering (cut short when the client goes away).
	Delay time.Duration
	// DropStreamBeforeEnd sends a streamed run's tokens, then ends the
	// response cleanly without the end event.
	DropStreamBeforeEnd bool
	// CloseConnection aborts the connection: before any byte for plain
	// requests, after the first tokens for streamed runs.
	CloseConnection bool
	// Times limits the fault to the next N matching requests (0: until
	// ClearFault).
	Times int
}

// Runtime is the handler. It is safe for concurrent use.
type Runtime struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	fault    *Fault
	flows    map[string]flowRecord // by id
	calls    int                   // run calls (plain and streamed)
	requests int                   // all requests
	lastRun  []byte
}

type flowRecord struct {
	id, name, endpoint string
	doc                map[string]any
}

// New returns a Runtime; it implements http.Handler.
func New(opts Options) *Runtime {
	rt := &Runtime{opts: opts, flows: map[string]flowRecord{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/run/{flow}", rt.run)
	mux.HandleFunc("POST /api/v1/flows/", rt.createFlow)
	mux.HandleFunc("POST /api/v1/flows", rt.createFlow)
	mux.HandleFunc("DELETE /api/v1/flows/{id}", rt.deleteFlow)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /health_check", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "chat": "ok", "db": "ok"})
	})
	rt.mux = mux
	return rt
}

// SetFault installs a fault (replacing any previous one).
func (rt *Runtime) SetFault(f Fault) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.fault = &f
}

// ClearFault restores normal behaviour.
func (rt *Runtime) ClearFault() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.fault = nil
}

// Calls counts run requests (plain and streamed) that reached the runtime.
func (rt *Runtime) Calls() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.calls
}

// Requests counts every request that reached the runtime.
func (rt *Runtime) Requests() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.requests
}

// LastRunBody is the raw body of the last run request (to assert the
// session_id and tweaks a client sent), nil before the first run.
func (rt *Runtime) LastRunBody() []byte {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]byte(nil), rt.lastRun...)
}

// FlowIDs lists the ids of the created flows, sorted.
func (rt *Runtime) FlowIDs() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	ids := make([]string, 0, len(rt.flows))
	for id := range rt.flows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ServeHTTP counts the request, applies faults and the API key check, then
// routes.
func (rt *Runtime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	public := r.URL.Path == "/health" || r.URL.Path == "/health_check"
	isRun := r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/run/")
	var body []byte
	if isRun {
		// Record every run, faulted or not, so tests can count attempts and
		// inspect what the client sent.
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, 8<<20)); err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f := rt.takeFault(r.URL.Path, public, isRun, body)
	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f != nil && f.CloseConnection && !isStream(r) {
		panic(http.ErrAbortHandler) // net/http closes the connection silently
	}
	if f != nil && f.Status != 0 {
		if f.RawBody != "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(f.Status)
			_, _ = io.WriteString(w, f.RawBody)
			return
		}
		writeJSON(w, f.Status, map[string]any{"detail": f.Detail})
		return
	}
	if !public && rt.opts.APIKey != "" && r.Header.Get("x-api-key") != rt.opts.APIKey {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "An API key must be passed as query or header"})
		return
	}
	if f != nil {
		r = r.WithContext(withFault(r.Context(), f))
	}
	rt.mux.ServeHTTP(w, r)
}

// takeFault counts the request and returns the fault that applies to it.
func (rt *Runtime) takeFault(p string, public, isRun bool, body []byte) *Fault {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.requests++
	if isRun {
		rt.calls++
		rt.lastRun = body
	}
	f := rt.fault
	if f == nil {
		return nil
	}
	if f.PathPrefix == "" && public || !strings.HasPrefix(p, f.PathPrefix) {
		return nil
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			rt.fault = nil
		}
	}
	cp := *f
	return &cp
}

func isStream(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/v1/run/") && r.URL.Query().Get("stream") == "true"
}

// runBody is what Langflow accepts; Langflow silently defaults missing or
// malformed fields, and so does this runtime.
type runBody struct {
	InputValue      string         `json:"input_value"`
	InputType       string         `json:"input_type"`
	OutputType      string         `json:"output_type"`
	OutputComponent string         `json:"output_component"`
	Tweaks          map[string]any `json:"tweaks"`
	SessionID       string         `json:"session_id"`
}

func (rt *Runtime) run(w http.ResponseWriter, r *http.Request) {
	flow := r.PathValue("flow")
	raw, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return
	}
	rt.mu.Lock()
	known := rt.lookup(flow)
	rt.mu.Unlock()
	if rt.opts.StrictFlows && known == "" {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": fmt.Sprintf("Flow identifier %s not found", flow)})
		return
	}
	if known != "" {
		flow = known
	}
	var body runBody
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			// FastAPI's shape for an undecodable body.
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
				"type": "json_invalid", "loc": []any{"body", 0}, "msg": "JSON decode error",
				"input": map[string]any{}, "ctx": map[string]any{"error": err.Error()},
			}}})
			return
		}
	}
	session := body.SessionID
	if session == "" {
		session = flow // what Langflow does, and why callers must send theirs
	}
	text := "echo: " + body.InputValue
	if sp := systemPrompt(body.Tweaks); sp != "" {
		text = "[" + sp + "] " + text
	}
	ans := answer{flow: flow, session: session, input: body.InputValue, text: text, usage: rt.opts.ReportUsage}
	if r.URL.Query().Get("stream") == "true" {
		rt.stream(w, r, ans, faultFrom(r.Context()))
		return
	}
	writeJSON(w, http.StatusOK, ans.response())
}

// lookup resolves a flow id or endpoint name; "" when unknown. Caller
// holds mu.
func (rt *Runtime) lookup(flow string) string {
	if _, ok := rt.flows[flow]; ok {
		return flow
	}
	for id, f := range rt.flows {
		if f.endpoint != "" && f.endpoint == flow {
			return id
		}
	}
	return ""
}

// systemPrompt finds a system prompt among the tweaks, flat or keyed by
// component, so the persona a gateway sends is visible in the echo.
func systemPrompt(tweaks map[string]any) string {
	keys := []string{"system_prompt", "system_message"}
	for _, k := range keys {
		if s, ok := tweaks[k].(string); ok && s != "" {
			return s
		}
	}
	comps := make([]string, 0, len(tweaks))
	for c := range tweaks {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	for _, c := range comps {
		m, ok := tweaks[c].(map[string]any)
		if !ok {
			continue
		}
		for _, k := range keys {
			if s, ok := m[k].(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

type answer struct {
	flow, session, input, text string
	usage                      bool
}

func estimate(s string) int {
	n := utf8.RuneCountInString(s)
	return (n + 3) / 4
}

// message is a Langflow Message as serialised in results and events.
func (a answer) message(id, sender, senderName, text string, withUsage bool) map[string]any {
	props := map[string]any{
		"text_color": "", "background_color": "", "edited": false,
		"source": map[string]any{"id": "ChatOutput-echo", "display_name": "Chat Output", "source": "echo"},
		"icon":   "", "allow_markdown": false, "positive_feedback": nil,
		"state": "complete", "targets": []any{},
	}
	if withUsage {
		props["usage"] = map[string]any{
			"input_tokens": estimate(a.input), "output_tokens": estimate(text),
			"total_tokens": estimate(a.input) + estimate(text),
		}
	}
	return map[string]any{
		"timestamp": time.Now().UTC().Format("2006-01-02 15:04:05 MST"),
		"sender":    sender, "sender_name": senderName, "session_id": a.session,
		"text": text, "files": []any{}, "error": false, "edit": false,
		"properties": props, "category": "message", "content_blocks": []any{},
		"id": id, "flow_id": a.flow,
	}
}

// response is the body of a non-streamed run, shaped like Langflow 1.x.
func (a answer) response() map[string]any {
	msgID := newUUID()
	data := a.message(msgID, "Machine", "AI", a.text, a.usage)
	msg := map[string]any{
		"text_key": "text", "data": data, "default_value": "",
		"text": a.text, "sender": "Machine", "sender_name": "AI", "files": []any{},
		"session_id": a.session, "timestamp": data["timestamp"], "flow_id": a.flow,
		"error": false, "edit": false, "properties": data["properties"], "category": "message",
		"content_blocks": []any{}, "id": msgID,
	}
	return map[string]any{
		"session_id": a.session,
		"outputs": []any{map[string]any{
			"inputs": map[string]any{"input_value": a.input},
			"outputs": []any{map[string]any{
				"results": map[string]any{"message": msg},
				"artifacts": map[string]any{
					"message": a.text, "sender": "Machine", "sender_name": "AI",
					"files": []any{}, "type": "object",
				},
				"outputs":                map[string]any{"message": map[string]any{"message": a.text, "type": "text"}},
				"logs":                   map[string]any{"message": []any{}},
				"messages":               []any{map[string]any{"message": a.text, "sender": "Machine", "sender_name": "AI", "session_id": a.session, "stream_url": nil, "component_id": "ChatOutput-echo", "files": []any{}, "type": "message"}},
				"timedelta":              nil,
				"duration":               nil,
				"component_display_name": "Chat Output",
				"component_id":           "ChatOutput-echo",
				"used_frozen_result":     false,
			}},
		}},
	}
}

// stream writes Langflow's event stream: the user's message, the bot's
// empty message, one token per word, the bot's final message, and end with
// the full response. Events are JSON followed by a blank line, as Langflow
// sends them (no SSE "data:" prefix).
func (rt *Runtime) stream(w http.ResponseWriter, r *http.Request, a answer, f *Fault) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(event string, data any) bool {
		b, _ := json.Marshal(map[string]any{"event": event, "data": data})
		if _, err := fmt.Fprintf(w, "%s\n\n", b); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	botID := newUUID()
	if !send("add_message", a.message(newUUID(), "User", "User", a.input, false)) ||
		!send("add_message", a.message(botID, "Machine", "AI", "", false)) {
		return
	}
	chunks := splitTokens(a.text)
	for i, c := range chunks {
		if i > 0 && rt.opts.TokenDelay > 0 {
			t := time.NewTimer(rt.opts.TokenDelay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if !send("token", map[string]any{"chunk": c, "id": botID, "timestamp": time.Now().UTC().Format("2006-01-02 15:04:05 MST")}) {
			return
		}
		if f != nil && f.CloseConnection && i == 0 {
			panic(http.ErrAbortHandler)
		}
	}
	if f != nil && f.CloseConnection {
		panic(http.ErrAbortHandler)
	}
	if f != nil && f.DropStreamBeforeEnd {
		return
	}
	if !send("add_message", a.message(botID, "Machine", "AI", a.text, a.usage)) {
		return
	}
	send("end", map[string]any{"result": a.response()})
}

// splitTokens cuts text into word-sized chunks that concatenate back to it.
func splitTokens(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if r == ' ' && i > start {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (rt *Runtime) createFlow(w http.ResponseWriter, r *http.Request) {
	var doc map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&doc); err != nil || doc == nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "model_attributes_type", "loc": []any{"body"}, "msg": "Input should be a valid dictionary or object to extract fields from",
		}}})
		return
	}
	name, _ := doc["name"].(string)
	if name == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []any{map[string]any{
			"type": "missing", "loc": []any{"body", "name"}, "msg": "Field required",
		}}})
		return
	}
	endpoint, _ := doc["endpoint_name"].(string)

	rt.mu.Lock()
	// Like Langflow: clashing names get " (1)", " (2)"...; clashing endpoint
	// names get "-1", "-2"...
	name = rt.unique(name, func(f flowRecord) string { return f.name }, " (%d)")
	if endpoint != "" {
		endpoint = rt.unique(endpoint, func(f flowRecord) string { return f.endpoint }, "-%d")
	}
	id := newUUID() // always assigned here, whatever the export says
	doc["id"], doc["name"] = id, name
	if endpoint != "" {
		doc["endpoint_name"] = endpoint
	} else {
		doc["endpoint_name"] = nil
	}
	doc["updated_at"] = time.Now().UTC().Format("2006-01-02T15:04:05")
	doc["user_id"] = "00000000-0000-4000-8000-000000000001"
	doc["folder_id"] = "00000000-0000-4000-8000-000000000002"
	rt.flows[id] = flowRecord{id: id, name: name, endpoint: endpoint, doc: doc}
	rt.mu.Unlock()
	writeJSON(w, http.StatusCreated, doc)
}

// unique suffixes base until no flow has it. Caller holds mu.
func (rt *Runtime) unique(base string, field func(flowRecord) string, suffix string) string {
	taken := func(s string) bool {
		for _, f := range rt.flows {
			if field(f) == s {
				return true
			}
		}
		return false
	}
	if !taken(base) {
		return base
	}
	for n := 1; ; n++ {
		if c := base + fmt.Sprintf(suffix, n); !taken(c) {
			return c
		}
	}
}

func (rt *Runtime) deleteFlow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rt.mu.Lock()
	_, ok := rt.flows[id]
	delete(rt.flows, id)
	rt.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Flow not found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": "Flow deleted successfully"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newUUID returns a random (version 4) UUID, as Langflow assigns.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// faultKey carries the request's fault from ServeHTTP to the stream writer,
// which applies the mid-stream faults.
type faultKey struct{}

func withFault(ctx context.Context, f *Fault) context.Context {
	return context.WithValue(ctx, faultKey{}, f)
}

func faultFrom(ctx context.Context) *Fault {
	f, _ := ctx.Value(faultKey{}).(*Fault)
	return f
}
