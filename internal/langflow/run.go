package langflow

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// RunRequest is the body of POST /api/v1/run/{flow}.
type RunRequest struct {
	// InputValue is the user's message.
	InputValue string
	// InputType is "chat" (default), "text" or "any".
	InputType string
	// OutputType is "chat" (default), "text", "any" or "debug".
	OutputType string
	// OutputComponent optionally selects one output component by id.
	OutputComponent string
	// Tweaks override component fields per run, keyed by component id (or
	// display name), e.g. {"Prompt-xvuxC": {"template": "..."}}.
	Tweaks map[string]any
	// SessionID is required: without it Langflow uses the flow id as the
	// session, so every caller of the flow would share one chat memory.
	SessionID string
}

// RunResult is the outcome of a run.
type RunResult struct {
	// Text is the answer (see extractText for where it is looked up).
	Text string
	// SessionID is the session Langflow ran in (ours, echoed back).
	SessionID string
	// InputTokens and OutputTokens are Langflow's usage numbers when
	// TokensReported is true; otherwise they are EstimateTokens of the input
	// value and of Text, so callers can meter either way.
	InputTokens, OutputTokens int
	TokensReported            bool
	// Raw is Langflow's full response (for Stream: the end event's result).
	Raw json.RawMessage
}

// runBody is the wire form; Langflow silently replaces malformed fields by
// defaults, so validate() runs before anything is sent.
type runBody struct {
	InputValue      string         `json:"input_value"`
	InputType       string         `json:"input_type"`
	OutputType      string         `json:"output_type"`
	OutputComponent string         `json:"output_component,omitempty"`
	Tweaks          map[string]any `json:"tweaks,omitempty"`
	SessionID       string         `json:"session_id"`
}

func (c *Client) encodeRun(op, flowID string, req RunRequest) ([]byte, error) {
	bad := func(msg string) error { return &Error{Kind: ErrBadRequest, Op: op, Detail: msg} }
	if strings.TrimSpace(flowID) == "" {
		return nil, bad("flow id is required")
	}
	if req.SessionID == "" {
		return nil, bad("session_id is required (without it every caller shares one chat memory)")
	}
	b := runBody{
		InputValue:      req.InputValue,
		InputType:       req.InputType,
		OutputType:      req.OutputType,
		OutputComponent: req.OutputComponent,
		Tweaks:          req.Tweaks,
		SessionID:       req.SessionID,
	}
	if b.InputType == "" {
		b.InputType = "chat"
	}
	if b.OutputType == "" {
		b.OutputType = "chat"
	}
	switch b.InputType {
	case "chat", "text", "any":
	default:
		return nil, bad("input_type must be chat, text or any")
	}
	switch b.OutputType {
	case "chat", "text", "any", "debug":
	default:
		return nil, bad("output_type must be chat, text, any or debug")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Keep <, > and & literal: prompts are text, not HTML.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, bad("tweaks are not JSON-encodable")
	}
	return buf.Bytes(), nil
}

func runPath(flowID string) string { return "/api/v1/run/" + url.PathEscape(flowID) }

// Run executes a flow and waits for the whole answer:
// POST {base}/api/v1/run/{flowID}?stream=false. The context's cancellation
// and deadline are honoured; the client's Timeout bounds the call too.
func (c *Client) Run(ctx context.Context, flowID string, req RunRequest) (RunResult, error) {
	const op = "run"
	body, err := c.encodeRun(op, flowID, req)
	if err != nil {
		return RunResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var res RunResult
	err = c.guard(ctx, op, func() error {
		resp, err := c.do(ctx, op, http.MethodPost, runPath(flowID), "stream=false", body, "application/json", true)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err := c.readBody(op, resp.Body)
		if err != nil {
			return err
		}
		res, err = parseRunResult(op, raw, req.InputValue)
		return err
	})
	if err != nil {
		return RunResult{}, err
	}
	return res, nil
}

// noTextDetail marks a response without any answer field, which a stream
// can still recover from its tokens.
const noTextDetail = "langflow response carries no answer text (does the flow end in a Chat Output?)"

// parseRunResult decodes a Langflow run response (also the "end" event's
// result when streaming).
func parseRunResult(op string, raw []byte, input string) (RunResult, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: "langflow answered with a body that is not a JSON object"}
	}
	text, found := extractText(doc)
	if !found {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: noTextDetail}
	}
	res := RunResult{Text: text, Raw: json.RawMessage(raw)}
	res.SessionID, _ = doc["session_id"].(string)
	in, out, ok := extractUsage(doc)
	res.applyUsage(in, out, ok, input)
	return res, nil
}

func (r *RunResult) applyUsage(in, out int, ok bool, input string) {
	if ok {
		r.InputTokens, r.OutputTokens, r.TokensReported = in, out, true
		return
	}
	r.InputTokens, r.OutputTokens, r.TokensReported = EstimateTokens(input), EstimateTokens(r.Text), false
}

// EstimateTokens approximates an LLM token count when Langflow does not
// report usage: one token per four characters (runes, so non-Latin text is
// not over-counted by its UTF-8 length), rounded up, and at least 1 for any
// non-empty string. It is deliberately simple and deterministic: the same
// text always bills the same.
func EstimateTokens(s string) int {
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return 0
	}
	return (n + 3) / 4
}

// path walks nested maps and arrays; integer steps index arrays.
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// textOf accepts a string, or an object's "text" string (Langflow renders
// a Message either way depending on version and output type).
func textOf(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case map[string]any:
		s, ok := t["text"].(string)
		return s, ok
	}
	return "", false
}

// answerLookups are the places Langflow has put the answer in one entry of
// outputs[0].outputs (one entry per output component), in order of
// preference; older versions and non-chat outputs fill only the later ones.
func answerLookups(o any) [6]func() (string, bool) {
	str := func(v any) (string, bool) { s, ok := v.(string); return s, ok }
	return [6]func() (string, bool){
		func() (string, bool) { return str(path(o, "results", "message", "text")) },
		func() (string, bool) { return str(path(o, "results", "message", "data", "text")) },
		func() (string, bool) { return textOf(path(o, "outputs", "message", "message")) },
		func() (string, bool) { return str(path(o, "results", "text", "text")) },
		func() (string, bool) { return textOf(path(o, "messages", 0, "message")) },
		func() (string, bool) { return textOf(path(o, "artifacts", "message")) },
	}
}

// extractText finds the answer in outputs[0].outputs[i]: for each lookup in
// order of preference, the first output component that has a non-empty
// value wins; so a chat output's message beats another component's
// artifacts. found reports whether any lookup matched at all (an empty
// answer is still an answer; no text anywhere is a broken flow).
func extractText(doc map[string]any) (text string, found bool) {
	outs, _ := path(doc, "outputs", 0, "outputs").([]any)
	lookups := make([][6]func() (string, bool), len(outs))
	for i, o := range outs {
		lookups[i] = answerLookups(o)
	}
	for l := 0; l < 6; l++ {
		for i := range outs {
			s, ok := lookups[i][l]()
			if !ok {
				continue
			}
			if s != "" {
				return s, true
			}
			found = true
		}
	}
	return "", found
}

// extractUsage finds token usage if Langflow reported any: in a message's
// properties.usage (Langflow 1.5+), a usage field next to it, or a top-level
// usage; as {input_tokens, output_tokens} or OpenAI's {prompt_tokens,
// completion_tokens}. Several output components' usages are summed.
func extractUsage(doc map[string]any) (in, out int, ok bool) {
	outs, _ := path(doc, "outputs", 0, "outputs").([]any)
	for _, o := range outs {
		for _, cand := range [][]any{
			{"results", "message", "data", "properties", "usage"},
			{"results", "message", "properties", "usage"},
			{"results", "message", "data", "usage"},
			{"results", "message", "usage"},
			{"usage"},
		} {
			if i, o2, found := usageOf(path(o, cand...)); found {
				in, out, ok = in+i, out+o2, true
				break
			}
		}
	}
	if !ok {
		in, out, ok = usageOf(doc["usage"])
	}
	return in, out, ok
}

// usageOf reads one usage object; it needs at least one numeric count.
func usageOf(v any) (in, out int, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		return 0, 0, false
	}
	num := func(keys ...string) (int, bool) {
		for _, k := range keys {
			switch n := m[k].(type) {
			case json.Number:
				if f, err := n.Float64(); err == nil && f >= 0 && f < math.MaxInt32 {
					return int(f), true
				}
			case float64:
				if n >= 0 && n < math.MaxInt32 {
					return int(n), true
				}
			}
		}
		return 0, false
	}
	in, okIn := num("input_tokens", "prompt_tokens")
	out, okOut := num("output_tokens", "completion_tokens")
	return in, out, okIn || okOut
}
