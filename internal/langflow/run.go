package langflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
		return c.readBody(op, resp.Body, func(raw []byte) (err error) {
			res, err = parseRunResult(op, raw, req.InputValue)
			return err
		})
	})
	if err != nil {
		return RunResult{}, err
	}
	return res, nil
}

// noTextDetail marks a response without any answer field, which a stream
// can still recover from its tokens.
const noTextDetail = "langflow response carries no answer text (does the flow end in a Chat Output?)"

// runDoc is the part of a run response that parseRunResult reads. Decoding
// into it instead of a map[string]any skips everything else (logs, message
// properties, content blocks, timestamps: most of a chat answer) without
// allocating it, which made the generic decode the gateway's largest CPU cost.
//
// Every leaf is an any, so a value of an unexpected type is read exactly as
// the generic walk read it (textOf, stringOf, firstCount) instead of being
// coerced; an object or array where another kind was expected is an
// UnmarshalTypeError that leaves that field at its zero value, which is what
// the walk saw too ("not there"). TestParseRunResultMatchesGenericDecode holds
// the two to the same answers. One difference remains, inherent to
// encoding/json's struct decoding: object keys also match case-insensitively
// ("Text" fills text); Langflow never sends such twins.
type runDoc struct {
	SessionID string `json:"session_id"`
	// Outputs has one entry per input; only the first is read.
	Outputs []struct {
		// Outputs has one entry per output component.
		Outputs []componentDoc `json:"outputs"`
	} `json:"outputs"`
	Usage *usageDoc `json:"usage"`
}

// componentDoc is one output component's result: the places answerText and
// runUsage look in. outputs, messages and artifacts hold only the later
// fallbacks, which a chat output never needs (its results.message.text
// answers): they are kept as raw JSON and decoded only when asked (see
// lazyDoc).
type componentDoc struct {
	Results struct {
		Message struct {
			Text any `json:"text"`
			Data struct {
				Text       any `json:"text"`
				Properties struct {
					Usage *usageDoc `json:"usage"`
				} `json:"properties"`
				Usage *usageDoc `json:"usage"`
			} `json:"data"`
			Properties struct {
				Usage *usageDoc `json:"usage"`
			} `json:"properties"`
			Usage *usageDoc `json:"usage"`
		} `json:"message"`
		Text struct {
			Text any `json:"text"`
		} `json:"text"`
	} `json:"results"`
	Outputs   lazyDoc   `json:"outputs"`
	Messages  lazyDoc   `json:"messages"`
	Artifacts lazyDoc   `json:"artifacts"`
	Usage     *usageDoc `json:"usage"`
}

// lazyDoc is a JSON value kept undecoded. It aliases the buffer being decoded
// (the input, which the caller may reuse once parseRunResult returns, or a
// json.Decoder's buffer that is dropped with it), so it costs no copy; it is
// only read before parseRunResult returns. decode reads it as the typed decode
// would have.
type lazyDoc []byte

func (l *lazyDoc) UnmarshalJSON(b []byte) error {
	*l = b
	return nil
}

// decode fills v from the value, if any; a value of the wrong shape leaves
// v's fields empty, as a field of the wrong type in the typed decode does.
func (l lazyDoc) decode(v any) {
	if len(l) > 0 {
		_ = json.Unmarshal(l, v)
	}
}

// messageField is where the later fallbacks keep the answer: outputs is
// {"message": {"message": X}}, messages [{"message": X}], artifacts
// {"message": X}.
type messageField struct {
	Message any `json:"message"`
}

// usageDoc is a usage object in either naming (see usageOf). A usage value
// that is not an object decodes to an empty usageDoc, which has no counts.
type usageDoc struct {
	InputTokens      any `json:"input_tokens"`
	PromptTokens     any `json:"prompt_tokens"`
	OutputTokens     any `json:"output_tokens"`
	CompletionTokens any `json:"completion_tokens"`
}

// counts reads one usage object; it needs at least one numeric count.
func (u *usageDoc) counts() (in, out int, ok bool) {
	if u == nil {
		return 0, 0, false
	}
	in, okIn := firstCount(u.InputTokens, u.PromptTokens)
	out, okOut := firstCount(u.OutputTokens, u.CompletionTokens)
	return in, out, okIn || okOut
}

// parseRunResult decodes a Langflow run response (also the "end" event's
// result when streaming).
func parseRunResult(op string, raw []byte, input string) (RunResult, error) {
	var doc runDoc
	if err := decodeRunDoc(raw, &doc); err != nil {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: "langflow answered with a body that is not a JSON object"}
	}
	var outs []componentDoc
	if len(doc.Outputs) > 0 {
		outs = doc.Outputs[0].Outputs
	}
	text, found := answerText(outs)
	if !found {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: noTextDetail}
	}
	res := RunResult{Text: text, SessionID: doc.SessionID}
	in, out, ok := runUsage(outs, doc.Usage)
	res.applyUsage(in, out, ok, input)
	return res, nil
}

// decodeRunDoc accepts what the generic decoder accepted: the first JSON value
// of raw, which must be an object (trailing data after it is ignored, as a
// json.Decoder does). Fields of an unexpected type are not an error: they are
// left empty, as the generic walk skipped them.
func decodeRunDoc(raw []byte, doc *runDoc) error {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return errNotObject
	}
	err := json.Unmarshal(trimmed, doc)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Unmarshal refuses trailing data, a Decoder reads past it; the rare
		// body that needs this pays for a second decode.
		*doc = runDoc{}
		err = json.NewDecoder(bytes.NewReader(trimmed)).Decode(doc)
	}
	var typ *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typ) {
		return err
	}
	return nil
}

var errNotObject = errors.New("not a JSON object")

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

// path walks nested maps and arrays; integer steps index arrays. (The stream
// reader walks add_message events with it.)
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

// stringOf accepts only a string.
func stringOf(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// answerLookupCount is how many places answerLookup knows.
const answerLookupCount = 6

// answerLookup is the l-th place Langflow has put the answer in one output
// component, in order of preference; older versions and non-chat outputs fill
// only the later ones:
//
//	0 results.message.text
//	1 results.message.data.text
//	2 outputs.message.message (a string or {text})
//	3 results.text.text
//	4 messages[0].message (a string or {text})
//	5 artifacts.message (a string or {text})
func answerLookup(o *componentDoc, l int) (string, bool) {
	switch l {
	case 0:
		return stringOf(o.Results.Message.Text)
	case 1:
		return stringOf(o.Results.Message.Data.Text)
	case 2:
		var v struct {
			Message messageField `json:"message"`
		}
		o.Outputs.decode(&v)
		return textOf(v.Message.Message)
	case 3:
		return stringOf(o.Results.Text.Text)
	case 4:
		var v []messageField
		o.Messages.decode(&v)
		if len(v) == 0 {
			return "", false
		}
		return textOf(v[0].Message)
	case 5:
		var v messageField
		o.Artifacts.decode(&v)
		return textOf(v.Message)
	}
	return "", false
}

// answerText finds the answer in outputs[0].outputs[i]: for each lookup in
// order of preference, the first output component that has a non-empty
// value wins; so a chat output's message beats another component's
// artifacts. found reports whether any lookup matched at all (an empty
// answer is still an answer; no text anywhere is a broken flow).
func answerText(outs []componentDoc) (text string, found bool) {
	for l := range answerLookupCount {
		for i := range outs {
			s, ok := answerLookup(&outs[i], l)
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

// runUsage finds token usage if Langflow reported any: in a message's
// properties.usage (Langflow 1.5+), a usage field next to it, or a top-level
// usage; as {input_tokens, output_tokens} or OpenAI's {prompt_tokens,
// completion_tokens}. Several output components' usages are summed.
func runUsage(outs []componentDoc, top *usageDoc) (in, out int, ok bool) {
	for i := range outs {
		m := &outs[i].Results.Message
		for _, u := range [...]*usageDoc{
			m.Data.Properties.Usage,
			m.Properties.Usage,
			m.Data.Usage,
			m.Usage,
			outs[i].Usage,
		} {
			if ui, uo, found := u.counts(); found {
				in, out, ok = in+ui, out+uo, true
				break
			}
		}
	}
	if !ok {
		in, out, ok = top.counts()
	}
	return in, out, ok
}

// usageOf reads one usage object decoded generically (the stream's
// add_message events); it needs at least one numeric count.
func usageOf(v any) (in, out int, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		return 0, 0, false
	}
	in, okIn := firstCount(m["input_tokens"], m["prompt_tokens"])
	out, okOut := firstCount(m["output_tokens"], m["completion_tokens"])
	return in, out, okIn || okOut
}

// firstCount is the first of vs that is a usable token count: a JSON number
// (json.Number when decoded with UseNumber, float64 otherwise) in [0, 2^31).
func firstCount(vs ...any) (int, bool) {
	for _, v := range vs {
		switch n := v.(type) {
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
