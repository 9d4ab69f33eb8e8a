package langflow

import (
	"errors"
	"strings"
	"testing"
)

// wrap puts one output component's result into a Langflow 1.x run response.
func wrap(outputs ...string) string {
	return `{"session_id": "sess-1", "outputs": [{"inputs": {"input_value": "hello"}, "outputs": [` +
		strings.Join(outputs, ",") + `]}]}`
}

// Shapes taken from Langflow run responses across versions: the 1.x chat
// output, messages whose text only lives under data, object and string
// outputs, text outputs, and the oldest shapes (messages / artifacts only).
const (
	chatOutput = `{
	  "results": {"message": {
	    "text_key": "text",
	    "data": {"timestamp": "2025-02-28T22:04:19+00:00", "sender": "Machine", "sender_name": "AI",
	      "session_id": "sess-1", "text": "Hello from data", "files": [], "error": false, "edit": false,
	      "properties": {"text_color": "", "background_color": "", "edited": false,
	        "source": {"id": "OpenAIModel-sz6xc", "display_name": "OpenAI", "source": "gpt-4o-mini"},
	        "icon": "OpenAI", "allow_markdown": false, "positive_feedback": null, "state": "complete", "targets": []},
	      "category": "message", "content_blocks": [], "id": "ddef2cca-236f-4b68-8bcb-a9e7acb21cf2",
	      "flow_id": "1e757ec6-dd3d-41a5-b266-b7118beca8ab"},
	    "default_value": "", "text": "Hello! How can I help?", "sender": "Machine", "sender_name": "AI",
	    "files": [], "session_id": "sess-1", "timestamp": "2025-02-28T22:04:19+00:00",
	    "flow_id": "1e757ec6-dd3d-41a5-b266-b7118beca8ab", "error": false, "edit": false,
	    "properties": {"state": "complete"}, "category": "message", "content_blocks": []}},
	  "artifacts": {"message": "Hello! How can I help?", "sender": "Machine", "sender_name": "AI", "files": [], "type": "object"},
	  "outputs": {"message": {"message": "Hello! How can I help?", "type": "text"}},
	  "logs": {"message": []},
	  "messages": [{"message": "Hello! How can I help?", "sender": "Machine", "sender_name": "AI",
	    "session_id": "sess-1", "stream_url": null, "component_id": "ChatOutput-5KjZp", "files": [], "type": "message"}],
	  "timedelta": null, "duration": null, "component_display_name": "Chat Output",
	  "component_id": "ChatOutput-5KjZp", "used_frozen_result": false}`

	dataOnly = `{
	  "results": {"message": {"text_key": "text",
	    "data": {"text": "Answer under data", "sender": "Machine", "sender_name": "AI", "session_id": "sess-1", "files": []},
	    "default_value": ""}},
	  "artifacts": {"message": "", "type": "object"},
	  "outputs": {}, "logs": {"message": []}, "messages": [],
	  "component_display_name": "Chat Output", "component_id": "ChatOutput-aaaa", "used_frozen_result": false}`

	outputsMessageString = `{
	  "results": {},
	  "artifacts": {},
	  "outputs": {"message": {"message": "Answer in outputs.message", "type": "text"}},
	  "logs": {"message": []}, "messages": [],
	  "component_display_name": "Chat Output", "component_id": "ChatOutput-bbbb"}`

	outputsMessageObject = `{
	  "results": {},
	  "outputs": {"message": {"message": {"text": "Answer in outputs.message.text", "sender": "Machine",
	    "sender_name": "AI", "session_id": "sess-1", "files": []}, "type": "object"}},
	  "logs": {"message": []},
	  "component_display_name": "Chat Output", "component_id": "ChatOutput-cccc"}`

	textOutput = `{
	  "results": {"text": {"text_key": "text", "data": {"text": "Answer from a Text Output"}, "default_value": "",
	    "text": "Answer from a Text Output"}},
	  "artifacts": {"repr": "Answer from a Text Output", "raw": "Answer from a Text Output", "type": "text"},
	  "outputs": {"text": {"message": "Answer from a Text Output", "type": "text"}},
	  "logs": {"text": []}, "messages": [],
	  "component_display_name": "Text Output", "component_id": "TextOutput-dddd"}`

	messagesOnly = `{
	  "results": {"result": "ignored"},
	  "messages": [{"message": "Answer in messages", "sender": "Machine", "sender_name": "AI",
	    "session_id": "sess-1", "component_id": "ChatOutput-eeee", "files": [], "type": "message"}],
	  "component_id": "ChatOutput-eeee"}`

	artifactsOnly = `{
	  "results": {},
	  "artifacts": {"message": "Answer in artifacts", "sender": "Machine", "sender_name": "AI", "files": [], "type": "object"},
	  "messages": [],
	  "component_id": "ChatOutput-ffff"}`

	emptyAnswer = `{
	  "results": {"message": {"text_key": "text", "data": {"text": ""}, "text": ""}},
	  "artifacts": {"message": ""}, "messages": []}`

	noAnswer = `{"results": {"data": {"value": 42}}, "artifacts": {"repr": "42"}, "messages": []}`
)

func TestExtractTextFallbacks(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"results.message.text", wrap(chatOutput), "Hello! How can I help?"},
		{"results.message.data.text", wrap(dataOnly), "Answer under data"},
		{"outputs.message.message string", wrap(outputsMessageString), "Answer in outputs.message"},
		{"outputs.message.message object", wrap(outputsMessageObject), "Answer in outputs.message.text"},
		{"results.text.text", wrap(textOutput), "Answer from a Text Output"},
		{"messages[0].message", wrap(messagesOnly), "Answer in messages"},
		{"artifacts.message", wrap(artifactsOnly), "Answer in artifacts"},
		// A component with only artifacts first, a chat output second: the
		// preferred field wins over the first component.
		{"preferred field across outputs", wrap(artifactsOnly, chatOutput), "Hello! How can I help?"},
		{"empty answer is an answer", wrap(emptyAnswer), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := parseRunResult("run", []byte(tc.body), "hello")
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if res.Text != tc.want {
				t.Fatalf("text = %q, want %q", res.Text, tc.want)
			}
			if res.SessionID != "sess-1" {
				t.Fatalf("session = %q", res.SessionID)
			}
			if res.TokensReported {
				t.Fatalf("tokens reported without usage")
			}
			if res.InputTokens != EstimateTokens("hello") || res.OutputTokens != EstimateTokens(tc.want) {
				t.Fatalf("estimates = %d/%d", res.InputTokens, res.OutputTokens)
			}
		})
	}
}

func TestParseRunResultFailures(t *testing.T) {
	for name, body := range map[string]string{
		"no answer field": wrap(noAnswer),
		"no outputs":      `{"session_id": "s", "outputs": []}`,
		"not JSON":        `<html>Bad Gateway</html>`,
		"JSON array":      `[1,2]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseRunResult("run", []byte(body), "x")
			if !errors.Is(err, ErrUpstream) {
				t.Fatalf("err = %v, want ErrUpstream", err)
			}
			if StatusCode(err) != 502 {
				t.Fatalf("status = %d", StatusCode(err))
			}
		})
	}
}

func TestExtractUsage(t *testing.T) {
	withUsage := func(where, usage string) string {
		switch where {
		case "data.properties":
			return wrap(`{"results": {"message": {"text": "hi", "data": {"text": "hi", "properties": {"state": "complete", "usage": ` + usage + `}}}}}`)
		case "message.properties":
			return wrap(`{"results": {"message": {"text": "hi", "properties": {"usage": ` + usage + `}}}}`)
		default:
			return `{"session_id": "s", "usage": ` + usage + `, "outputs": [{"outputs": [{"results": {"message": {"text": "hi"}}}]}]}`
		}
	}
	cases := []struct {
		name, body string
		in, out    int
		reported   bool
	}{
		{"anthropic-style in data.properties", withUsage("data.properties", `{"input_tokens": 12, "output_tokens": 34, "total_tokens": 46}`), 12, 34, true},
		{"openai-style in message.properties", withUsage("message.properties", `{"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}`), 7, 9, true},
		{"top-level usage", withUsage("top", `{"input_tokens": 3, "output_tokens": 4}`), 3, 4, true},
		{"null usage", withUsage("data.properties", `null`), EstimateTokens("hello world"), EstimateTokens("hi"), false},
		{"usage with null counts", withUsage("data.properties", `{"input_tokens": null, "output_tokens": null}`), EstimateTokens("hello world"), EstimateTokens("hi"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := parseRunResult("run", []byte(tc.body), "hello world")
			if err != nil {
				t.Fatal(err)
			}
			if res.InputTokens != tc.in || res.OutputTokens != tc.out || res.TokensReported != tc.reported {
				t.Fatalf("got %d/%d reported=%v, want %d/%d reported=%v",
					res.InputTokens, res.OutputTokens, res.TokensReported, tc.in, tc.out, tc.reported)
			}
		})
	}
}

func TestEstimateTokens(t *testing.T) {
	for s, want := range map[string]int{
		"":                       0,
		" ":                      1,
		"a":                      1,
		"abcd":                   1,
		"abcde":                  2,
		"héllo wörld":            3, // 11 runes, not 13 bytes
		"日本語のテキスト":               2, // 8 runes
		strings.Repeat("x", 400): 100,
	} {
		if got := EstimateTokens(s); got != want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", s, got, want)
		}
	}
}

const pyTraceback = "Traceback (most recent call last):\n  File \"/app/.venv/lib/python3.12/site-packages/langflow/api/v1/endpoints.py\", line 310, in simplified_run_flow\n    result = await simple_run_flow(\n  File \"/app/secret/path.py\", line 12\nValueError: OPENAI_API_KEY=sk-live-secret"

func TestParseDetailShapes(t *testing.T) {
	long := strings.Repeat("very long error ", 60)
	cases := []struct {
		name, ctype, body, want string
	}{
		{"string", "application/json", `{"detail": "Flow not found"}`, "Flow not found"},
		{"JSON string", "application/json", `{"detail": "{\"message\": \"Error running graph: invalid model\", \"traceback\": \"Traceback (most recent call last):\\n  File x\"}"}`, "Error running graph: invalid model"},
		{"array (FastAPI validation)", "application/json", `{"detail": [{"type": "missing", "loc": ["body", "input_value"], "msg": "Field required", "input": {}}, {"type": "string_type", "loc": ["body", "session_id"], "msg": "Input should be a valid string"}]}`, "body.input_value: Field required; body.session_id: Input should be a valid string"},
		{"array of strings", "application/json", `{"detail": ["first problem", "second problem"]}`, "first problem; second problem"},
		{"object with message", "application/json", `{"detail": {"message": "Component ChatInput failed", "traceback": "Traceback (most recent call last): ..."}}`, "Component ChatInput failed"},
		{"object without known keys", "application/json", `{"detail": {"code": 17, "component": "Prompt-xvuxC", "stack_trace": "File x"}}`, "code: 17, component: Prompt-xvuxC"},
		{"string with traceback", "application/json", `{"detail": ` + quote("Error building Component OpenAI Model: boom\n\n"+pyTraceback) + `}`, "Error building Component OpenAI Model: boom"},
		{"traceback only", "application/json", `{"detail": ` + quote(pyTraceback) + `}`, "internal server error"},
		{"no detail key", "application/json", `{"error": "rate limited"}`, "rate limited"},
		{"html page", "text/html", `<html><body><h1>502 Bad Gateway</h1></body></html>`, "internal server error"},
		{"plain text", "text/plain", "Internal Server Error", "Internal Server Error"},
		{"long", "application/json", `{"detail": "` + long + `"}`, strings.TrimSpace(long[:199]) + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseDetail(500, tc.ctype, []byte(tc.body), nil)
			if got != tc.want {
				t.Fatalf("detail = %q\nwant     %q", got, tc.want)
			}
			if strings.Contains(got, "Traceback") || strings.Contains(got, "File \"") || strings.Contains(got, "sk-live-secret") {
				t.Fatalf("traceback leaked: %q", got)
			}
			if n := len([]rune(got)); n > maxDetailRunes {
				t.Fatalf("detail has %d runes", n)
			}
		})
	}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func TestStatusCode(t *testing.T) {
	for k, want := range map[Kind]int{
		ErrBadRequest: 400, ErrNotFound: 404, ErrUpstream: 502, ErrUnavailable: 503,
		ErrTimeout: 504, ErrStreamIncomplete: 502, ErrCanceled: 499,
	} {
		if got := StatusCode(&Error{Kind: k, Op: "run"}); got != want {
			t.Errorf("StatusCode(%s) = %d, want %d", k, got, want)
		}
		if got := StatusCode(k); got != want {
			t.Errorf("StatusCode(bare %s) = %d, want %d", k, got, want)
		}
	}
	if StatusCode(errors.New("other")) != 500 {
		t.Error("foreign errors should map to 500")
	}
}

func TestKindOfAndMessages(t *testing.T) {
	err := &Error{Kind: ErrStreamIncomplete, Op: "stream", Detail: "langflow closed the stream"}
	if KindOf(err) != ErrStreamIncomplete || KindOf(errors.New("x")) != "" || KindOf(ErrTimeout) != ErrTimeout {
		t.Fatal("KindOf")
	}
	if got := err.Error(); got != "langflow stream: stream ended before the end event: langflow closed the stream" {
		t.Fatalf("Error() = %q", got)
	}
	withStatus := &Error{Kind: ErrBadRequest, Op: "run", Status: 422, Detail: "body.input_value: Field required"}
	if got := withStatus.Error(); got != "langflow run: bad request (HTTP 422): body.input_value: Field required" {
		t.Fatalf("Error() = %q", got)
	}
	if got := parseDetail(500, "application/json", []byte(`"plain JSON string body"`), nil); got != "plain JSON string body" {
		t.Fatalf("JSON string body: %q", got)
	}
}
