package flowcheck

import (
	"bytes"
	"testing"
)

// FuzzCheck: Check and Strip never panic, Valid agrees with Errors, and an
// export Strip produced has nothing left to strip.
func FuzzCheck(f *testing.F) {
	seeds := [][]byte{
		nil,
		[]byte(`{}`),
		[]byte(`{"data":{"nodes":[],"edges":[]}}`),
		[]byte(`{"data":{"nodes":[{"id":"a","data":{"type":"ChatInput","node":{"template":{"k":{"password":true,"value":"x"}}}}}],"edges":[{"source":"a","target":"b","sourceHandle":"A|a|B"}]}}`),
		[]byte(`{"data":{"nodes":[{"id":"m","data":{"type":"MCPTools","node":{"template":{"headers_input":{"value":"{\"A\":\"b\"}"},"env":{"value":["K=V"]},"code":{"value":"api_key = \"abcdefghij0123456789xyz\" sk-aaaaaaaaaaaaaaaaaaaaaaaa"}}}}}]}}`),
		[]byte(`[[[[[[[[[[`),
	}
	// Synthetic exports shaped like real ones. The fixtures themselves are
	// too large to be useful seeds: the fuzzer spends its time minimising
	// them instead of exploring.
	loop := basic(component("Model-1", "LanguageModelComponent", obj{
		"api_key": passwordField("literal-secret-value-1", false),
		"var":     passwordField("OPENAI_API_KEY", true),
		"code":    codeField("client = OpenAI(api_key=\"sk-proj-Zx81kQm2Lr7TbV4nWc9YhJd3\")"),
	}))
	loop["data"].(obj)["edges"] = append(loop["data"].(obj)["edges"].([]any), link("ChatOutput-1", "Model-1"), link("Model-1", "Gone"))
	seeds = append(seeds, encode(f, loop), encode(f, basic(nil)))
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		opts := Options{MaxBytes: 1 << 20, MaxNodes: 200, MaxEdges: 500, MaxDepth: 64}
		rep := Check(raw, opts)
		if rep.Valid != (len(rep.Errors) == 0) {
			t.Fatalf("Valid %v with errors %+v", rep.Valid, rep.Errors)
		}
		for _, s := range rep.Secrets {
			if s.Preview == "" {
				t.Fatal("empty preview")
			}
		}
		out, srep, err := StripWith(raw, opts)
		if err != nil {
			return
		}
		if len(srep.Secrets) != len(rep.Secrets) {
			t.Fatalf("Strip found %d secrets, Check %d", len(srep.Secrets), len(rep.Secrets))
		}
		again := Check(out, Options{})
		if len(again.Secrets) != 0 {
			t.Fatalf("stripped export still has secrets %+v\n%s", again.Secrets, out)
		}
		if again.Valid != rep.Valid || again.Stats != rep.Stats {
			t.Fatalf("stripping changed the report: %+v -> %+v", rep, again)
		}
		if bytes.Contains(out, []byte("\n")) && !bytes.Contains(raw, []byte("\n")) && !bytes.Contains(raw, []byte(`\n`)) {
			t.Fatalf("re-encoding introduced a newline")
		}
	})
}
