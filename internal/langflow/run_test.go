package langflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// refParseRunResult is the generic decoder parseRunResult replaced (a map[string]any
// walked by path), kept as the reference the typed decoder must agree with.
func refParseRunResult(op string, raw []byte, input string) (RunResult, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: "langflow answered with a body that is not a JSON object"}
	}
	text, found := refExtractText(doc)
	if !found {
		return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: noTextDetail}
	}
	res := RunResult{Text: text}
	res.SessionID, _ = doc["session_id"].(string)
	in, out, ok := refExtractUsage(doc)
	res.applyUsage(in, out, ok, input)
	return res, nil
}

func refExtractText(doc map[string]any) (text string, found bool) {
	outs, _ := path(doc, "outputs", 0, "outputs").([]any)
	str := func(v any) (string, bool) { s, ok := v.(string); return s, ok }
	for l := 0; l < 6; l++ {
		for _, o := range outs {
			var s string
			var ok bool
			switch l {
			case 0:
				s, ok = str(path(o, "results", "message", "text"))
			case 1:
				s, ok = str(path(o, "results", "message", "data", "text"))
			case 2:
				s, ok = textOf(path(o, "outputs", "message", "message"))
			case 3:
				s, ok = str(path(o, "results", "text", "text"))
			case 4:
				s, ok = textOf(path(o, "messages", 0, "message"))
			case 5:
				s, ok = textOf(path(o, "artifacts", "message"))
			}
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

func refExtractUsage(doc map[string]any) (in, out int, ok bool) {
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

// parseCorpus is every documented shape, with and without usage.
func parseCorpus() []string {
	usage := func(u string) string {
		return wrap(`{"results": {"message": {"text": "hi", "usage": ` + u + `, "properties": {"usage": ` + u + `},
		  "data": {"text": "hi", "usage": ` + u + `, "properties": {"usage": ` + u + `}}}}, "usage": ` + u + `}`)
	}
	return []string{
		wrap(chatOutput), wrap(dataOnly), wrap(outputsMessageString), wrap(outputsMessageObject),
		wrap(textOutput), wrap(messagesOnly), wrap(artifactsOnly), wrap(emptyAnswer), wrap(noAnswer),
		wrap(artifactsOnly, chatOutput), wrap(dataOnly, textOutput, messagesOnly),
		usage(`{"input_tokens": 12, "output_tokens": 34}`),
		usage(`{"prompt_tokens": 7, "completion_tokens": 9}`),
		`{"session_id": "s", "usage": {"input_tokens": 3, "output_tokens": 4}, "outputs": [{"outputs": [{"results": {"message": {"text": "hi"}}}]}]}`,
		`{"session_id": "s", "outputs": []}`,
	}
}

// TestParseRunResultMatchesGenericDecode mutates the documented shapes (any node replaced
// by a value of another type, or removed) and checks that the typed decoder reads every
// one exactly as the generic walk did: same text, session, usage and failure.
func TestParseRunResultMatchesGenericDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iterations := 20000
	if testing.Short() {
		iterations = 2000
	}
	check := func(body []byte) {
		t.Helper()
		want, wantErr := refParseRunResult("run", body, "some input")
		got, gotErr := parseRunResult("run", body, "some input")
		if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
			t.Fatalf("body %s\nerr = %v, want %v", body, gotErr, wantErr)
		}
		if got.Text != want.Text || got.SessionID != want.SessionID || got.InputTokens != want.InputTokens ||
			got.OutputTokens != want.OutputTokens || got.TokensReported != want.TokensReported {
			t.Fatalf("body %s\ngot  %+v\nwant %+v", body, got, want)
		}
	}
	for _, body := range parseCorpus() {
		check([]byte(body))
		check([]byte(body + ` trailing`))
		check([]byte(" \n" + body + `{"second": 1}`))
	}
	for _, body := range []string{``, `null`, `[]`, `"x"`, `12`, `{`, `{"outputs": 1}`, `{"outputs": [1, {"outputs": 2}]}`} {
		check([]byte(body))
	}
	corpus := parseCorpus()
	for range iterations {
		var doc any
		dec := json.NewDecoder(strings.NewReader(corpus[rng.IntN(len(corpus))]))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		for range 1 + rng.IntN(3) {
			doc = mutate(rng, doc)
		}
		body, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		check(body)
	}
}

// mutate replaces one random node of v (or v itself) by a random value, or deletes it.
func mutate(rng *rand.Rand, v any) any {
	var nodes []func(any)
	var walk func(v any, set func(any))
	walk = func(v any, set func(any)) {
		nodes = append(nodes, set)
		switch t := v.(type) {
		case map[string]any:
			for k, inner := range t {
				walk(inner, func(n any) {
					if n == deleted {
						delete(t, k)
						return
					}
					t[k] = n
				})
			}
		case []any:
			for i, inner := range t {
				walk(inner, func(n any) {
					if n != deleted {
						t[i] = n
					}
				})
			}
		}
	}
	root := v
	walk(v, func(n any) {
		if n != deleted {
			root = n
		}
	})
	nodes[rng.IntN(len(nodes))](randomValue(rng))
	return root
}

// deleted marks a mutation that removes the node.
var deleted = new(int)

func randomValue(rng *rand.Rand) any {
	switch rng.IntN(14) {
	case 0:
		return deleted
	case 1:
		return nil
	case 2:
		return ""
	case 3:
		return "mutated text"
	case 4:
		return json.Number([]string{"0", "5", "-3", "12.7", "1e3", "3000000000", "2147483646"}[rng.IntN(7)])
	case 5:
		return true
	case 6:
		return []any{}
	case 7:
		return []any{"first", map[string]any{"message": "in array"}}
	case 8:
		return map[string]any{}
	case 9:
		return map[string]any{"text": "object text"}
	case 10:
		return map[string]any{"text": json.Number("1")}
	case 11:
		return map[string]any{"input_tokens": "12", "prompt_tokens": json.Number("8"), "output_tokens": nil}
	case 12:
		return map[string]any{"message": map[string]any{"text": "nested", "usage": map[string]any{"completion_tokens": json.Number("2")}}}
	default:
		return []any{map[string]any{"message": "m"}}
	}
}

func TestDecodeRunDocRefusesNonObjects(t *testing.T) {
	for _, body := range []string{``, ` `, `null`, `[{}]`, `"{}"`, `{"a":`} {
		var doc runDoc
		if err := decodeRunDoc([]byte(body), &doc); err == nil {
			t.Errorf("%q decoded", body)
		}
	}
	var doc runDoc
	if err := decodeRunDoc([]byte(`{"session_id": 5, "outputs": "x", "usage": []}`), &doc); err != nil || errors.Is(err, errNotObject) {
		t.Fatalf("wrong field types are not an error: %v", err)
	}
}

// BenchmarkParseRunResult is the non-streamed answer of a one-component chat flow with
// usage, the gateway's common case.
func BenchmarkParseRunResult(b *testing.B) {
	body := []byte(wrap(strings.Replace(chatOutput, `"properties": {"state": "complete"}`,
		`"properties": {"state": "complete", "usage": {"input_tokens": 12, "output_tokens": 34}}`, 1)))
	for _, bc := range []struct {
		name  string
		parse func(string, []byte, string) (RunResult, error)
	}{{"typed", parseRunResult}, {"generic", refParseRunResult}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				res, err := bc.parse("run", body, "hello")
				if err != nil || !res.TokensReported {
					b.Fatal(res, err)
				}
			}
		})
	}
}
