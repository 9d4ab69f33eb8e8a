package flowcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Builders for synthetic 1.x exports, shaped like the starter projects.

type obj = map[string]any

func component(id, typ string, template obj) obj {
	if template == nil {
		template = obj{}
	}
	return obj{
		"id":   id,
		"type": "genericNode",
		"data": obj{
			"id":   id,
			"type": typ,
			"node": obj{
				"template": template,
				"outputs":  []any{obj{"name": "out", "types": []any{"Message"}}},
				"edited":   false,
				"metadata": obj{"module": "lfx.components.x." + typ},
			},
		},
	}
}

func note(id string) obj {
	return obj{"id": id, "type": "noteNode", "data": obj{"id": id, "type": "note", "node": obj{"description": "hello"}}}
}

func link(src, dst string) obj {
	return obj{
		"id": "e-" + src + "-" + dst, "source": src, "target": dst,
		"sourceHandle": "{œdataTypeœ: œXœ, œidœ: œ" + src + "œ, œnameœ: œoutœ, œoutput_typesœ: [œMessageœ]}",
		"targetHandle": "{œfieldNameœ: œinœ, œidœ: œ" + dst + "œ, œinputTypesœ: [œMessageœ], œtypeœ: œstrœ}",
	}
}

func flow(nodes []obj, edges []obj) obj {
	ns := make([]any, len(nodes))
	for i, n := range nodes {
		ns[i] = n
	}
	es := make([]any, len(edges))
	for i, e := range edges {
		es[i] = e
	}
	return obj{
		"name": "Synthetic", "description": "test flow", "last_tested_version": "1.7.0",
		"data": obj{"nodes": ns, "edges": es, "viewport": obj{"x": 0, "y": 0, "zoom": 1}},
	}
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// basic is ChatInput → Model → ChatOutput, the smallest valid flow.
func basic(model obj) obj {
	if model == nil {
		model = component("Model-1", "LanguageModelComponent", nil)
	}
	return flow([]obj{
		component("ChatInput-1", "ChatInput", nil),
		model,
		component("ChatOutput-1", "ChatOutput", nil),
	}, []obj{link("ChatInput-1", model["id"].(string)), link(model["id"].(string), "ChatOutput-1")})
}

func codeField(src string) obj {
	return obj{"type": "code", "value": src, "password": false, "load_from_db": false}
}

func passwordField(value string, fromDB bool) obj {
	return obj{"type": "str", "value": value, "password": true, "load_from_db": fromDB}
}

func hasCode(ps []Problem, code string) bool {
	return slices.ContainsFunc(ps, func(p Problem) bool { return p.Code == code })
}

// mustNotContain asserts a secret value is gone from stored bytes.
func mustNotContain(t *testing.T, out []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("stripped export still contains %q", s)
		}
	}
}

func TestInputErrors(t *testing.T) {
	deep := strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000)
	tests := []struct {
		name string
		raw  string
		code string
	}{
		{"zero bytes", "", CodeEmptyInput},
		{"whitespace", " \n\t ", CodeEmptyInput},
		{"not json", "name: my flow", CodeInvalidJSON},
		{"truncated", `{"data": {"nodes": [`, CodeInvalidJSON},
		{"trailing content", `{"data":{"nodes":[]}} {}`, CodeInvalidJSON},
		{"array", `[{"data":{}}]`, CodeNotAFlow},
		{"string", `"flow"`, CodeNotAFlow},
		{"null", `null`, CodeNotAFlow},
		{"no data", `{"name":"x"}`, CodeNotAFlow},
		{"data not object", `{"data":[]}`, CodeNotAFlow},
		{"no nodes", `{"data":{"edges":[]}}`, CodeNotAFlow},
		{"nodes not array", `{"data":{"nodes":{}}}`, CodeNotAFlow},
		{"edges not array", `{"data":{"nodes":[],"edges":"x"}}`, CodeNotAFlow},
		{"empty flow", `{"data":{"nodes":[],"edges":[]}}`, CodeEmptyFlow},
		{"only notes", string(encode(t, flow([]obj{note("note-1")}, nil))), CodeEmptyFlow},
		{"deeply nested", deep, CodeTooDeep},
		{"node not object", `{"data":{"nodes":[1],"edges":[]}}`, CodeMalformedNode},
		{"node without id", `{"data":{"nodes":[{"type":"genericNode"}],"edges":[]}}`, CodeMalformedNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			rep := Check([]byte(tt.raw), Options{})
			if rep.Valid {
				t.Fatalf("valid, want %s", tt.code)
			}
			if !hasCode(rep.Errors, tt.code) {
				t.Fatalf("errors %+v, want %s", rep.Errors, tt.code)
			}
			if rep.Errors[0].Message == "" {
				t.Error("empty message")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			_, _, err := Strip([]byte(tt.raw))
			if scanned := tt.code == CodeEmptyFlow || tt.code == CodeMalformedNode; scanned != (err == nil) {
				t.Errorf("Strip error = %v; a flow whose nodes were scanned can be stripped, anything else not", err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	raw := encode(t, basic(nil))
	if rep := Check(raw, Options{MaxBytes: len(raw) - 1}); !hasCode(rep.Errors, CodeTooLarge) {
		t.Errorf("MaxBytes: %+v", rep.Errors)
	}
	if rep := Check(raw, Options{MaxNodes: 2}); !hasCode(rep.Errors, CodeTooManyNodes) {
		t.Errorf("MaxNodes: %+v", rep.Errors)
	}
	if rep := Check(raw, Options{MaxEdges: 1}); !hasCode(rep.Errors, CodeTooManyEdges) {
		t.Errorf("MaxEdges: %+v", rep.Errors)
	}
	if rep := Check(raw, Options{MaxDepth: 3}); !hasCode(rep.Errors, CodeTooDeep) {
		t.Errorf("MaxDepth: %+v", rep.Errors)
	}
	if rep := Check(raw, Options{}); !rep.Valid {
		t.Errorf("defaults refuse a small flow: %+v", rep.Errors)
	}
	big := make([]byte, DefaultMaxBytes+1)
	if rep := Check(big, Options{}); !hasCode(rep.Errors, CodeTooLarge) {
		t.Errorf("default MaxBytes not applied: %+v", rep.Errors)
	}
}

// Deep and wide JSON within the limits is handled in bounded time.
func TestLargeInputsWithinLimits(t *testing.T) {
	// 240 levels inside a template value: under MaxDepth, decoded, not walked.
	nested := any("x")
	for range 120 {
		nested = []any{obj{"v": nested}}
	}
	m := component("Model-1", "LanguageModelComponent", obj{"deep": obj{"type": "dict", "value": nested}})
	// A 6 MB code field full of credential words but no keys.
	long := strings.Repeat("token = get_token(api_key)  # password auth\n", 6<<20/45)
	m["data"].(obj)["node"].(obj)["template"].(obj)["code"] = codeField(long)
	raw := encode(t, basic(m))
	if len(raw) > DefaultMaxBytes {
		t.Fatalf("test input is %d bytes, over the limit", len(raw))
	}
	start := time.Now()
	rep := Check(raw, Options{})
	if !rep.Valid || len(rep.Secrets) != 0 {
		t.Errorf("valid=%v errors=%+v secrets=%+v", rep.Valid, rep.Errors, rep.Secrets)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Check took %v", d)
	}
}

func TestGraphProblems(t *testing.T) {
	tests := []struct {
		name     string
		flow     obj
		valid    bool
		errors   []string
		warnings []string
		info     []string
		check    func(t *testing.T, rep Report)
	}{
		{
			name:  "basic flow is clean",
			flow:  basic(nil),
			valid: true,
			check: func(t *testing.T, rep Report) {
				want := Stats{Nodes: 3, Edges: 2, Inputs: 1, Outputs: 1, Subgraphs: 1}
				if rep.Stats != want || rep.Format != Format1x || rep.Name != "Synthetic" || rep.Description != "test flow" {
					t.Errorf("stats %+v format %q name %q", rep.Stats, rep.Format, rep.Name)
				}
			},
		},
		{
			name: "loop edge imports and is reported",
			flow: flow([]obj{
				component("ChatInput-1", "ChatInput", nil),
				component("Loop-1", "LoopComponent", nil),
				component("Step-1", "ParserComponent", nil),
				component("ChatOutput-1", "ChatOutput", nil),
			}, []obj{link("ChatInput-1", "Loop-1"), link("Loop-1", "Step-1"), link("Step-1", "Loop-1"), link("Loop-1", "ChatOutput-1")}),
			valid: true, info: []string{CodeCycle},
			check: func(t *testing.T, rep Report) {
				if !rep.Stats.HasCycles {
					t.Error("HasCycles false")
				}
			},
		},
		{
			name: "self loop",
			flow: flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)},
				[]obj{link("ChatInput-1", "ChatOutput-1"), link("ChatOutput-1", "ChatOutput-1")}),
			valid: true, info: []string{CodeCycle},
		},
		{
			name: "duplicate node ids",
			flow: flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)},
				[]obj{link("ChatInput-1", "ChatOutput-1")}),
			errors: []string{CodeDuplicateNodeID},
			check: func(t *testing.T, rep Report) {
				if rep.Errors[0].NodeID != "ChatInput-1" || !strings.Contains(rep.Errors[0].Message, "#1 and #2") {
					t.Errorf("%+v", rep.Errors[0])
				}
			},
		},
		{
			name:   "edge to missing node",
			flow:   flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)}, []obj{link("ChatInput-1", "Gone-1"), link("ChatInput-1", "ChatOutput-1")}),
			errors: []string{CodeEdgeToMissingNode},
			check: func(t *testing.T, rep Report) {
				if rep.Errors[0].NodeID != "Gone-1" {
					t.Errorf("%+v", rep.Errors[0])
				}
			},
		},
		{
			name:   "edge from missing node",
			flow:   flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)}, []obj{link("Gone-1", "ChatOutput-1"), link("ChatInput-1", "ChatOutput-1")}),
			errors: []string{CodeEdgeToMissingNode},
		},
		{
			name:   "edge without target",
			flow:   flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)}, []obj{{"source": "ChatInput-1"}, link("ChatInput-1", "ChatOutput-1")}),
			errors: []string{CodeMalformedEdge},
		},
		{
			name:     "no input node",
			flow:     flow([]obj{component("Model-1", "LanguageModelComponent", nil), component("ChatOutput-1", "ChatOutput", nil)}, []obj{link("Model-1", "ChatOutput-1")}),
			valid:    true,
			warnings: []string{CodeNoInputNode},
		},
		{
			name:     "text input only",
			flow:     flow([]obj{component("TextInput-1", "TextInput", nil), component("ChatOutput-1", "ChatOutput", nil)}, []obj{link("TextInput-1", "ChatOutput-1")}),
			valid:    true,
			warnings: []string{CodeNoChatInput},
		},
		{
			name: "several inputs and outputs",
			flow: flow([]obj{
				component("ChatInput-1", "ChatInput", nil), component("TextInput-1", "TextInput", nil), component("TextInput-2", "TextInput", nil),
				component("Prompt-1", "Prompt", nil),
				component("ChatOutput-1", "ChatOutput", nil), component("TextOutput-1", "TextOutput", nil),
			}, []obj{link("ChatInput-1", "Prompt-1"), link("TextInput-1", "Prompt-1"), link("TextInput-2", "Prompt-1"), link("Prompt-1", "ChatOutput-1"), link("Prompt-1", "TextOutput-1")}),
			valid:    true,
			warnings: []string{CodeMultipleInputs, CodeMultipleOutputs},
			check: func(t *testing.T, rep Report) {
				if rep.Stats.Inputs != 3 || rep.Stats.Outputs != 2 {
					t.Errorf("%+v", rep.Stats)
				}
			},
		},
		{
			name:     "no output node",
			flow:     flow([]obj{component("ChatInput-1", "ChatInput", nil), component("Model-1", "LanguageModelComponent", nil)}, []obj{link("ChatInput-1", "Model-1")}),
			valid:    true,
			warnings: []string{CodeNoOutputNode},
		},
		{
			name: "disconnected parts",
			flow: flow([]obj{
				component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil),
				component("File-1", "File", nil), component("Store-1", "AstraDB", nil),
			}, []obj{link("ChatInput-1", "ChatOutput-1"), link("File-1", "Store-1")}),
			valid:    true,
			warnings: []string{CodeDisconnected},
		},
		{
			name: "note nodes ignored, including data.type missing",
			flow: func() obj {
				f := basic(nil)
				undef := obj{"id": "undefined-1", "type": "noteNode", "data": obj{"id": "undefined-1", "node": obj{"description": "x"}}}
				nodes := f["data"].(obj)["nodes"].([]any)
				f["data"].(obj)["nodes"] = append(nodes, note("note-1"), undef)
				return f
			}(),
			valid:    true,
			warnings: []string{CodeNoteIgnored},
			check: func(t *testing.T, rep Report) {
				if rep.Stats.Notes != 2 || rep.Stats.Nodes != 3 || len(rep.Warnings) != 2 {
					t.Errorf("stats %+v warnings %+v", rep.Stats, rep.Warnings)
				}
			},
		},
		{
			name: "server-side export shape",
			flow: func() obj {
				f := basic(nil)
				delete(f, "last_tested_version")
				f["id"] = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
				f["user_id"] = "b7e1a1a2-0000-4000-8000-000000000001"
				f["folder_id"] = "b7e1a1a2-0000-4000-8000-000000000002"
				f["webhook"] = false
				f["endpoint_name"] = nil
				f["updated_at"] = "2026-01-01T00:00:00"
				return f
			}(),
			valid: true,
			check: func(t *testing.T, rep Report) {
				if rep.Format != Format1x {
					t.Errorf("format %q", rep.Format)
				}
			},
		},
		{
			name: "0.x pipe handles",
			flow: func() obj {
				f := flow([]obj{component("LLMChain-1", "LLMChain", nil), component("ChatOpenAI-1", "ChatOpenAI", nil)}, nil)
				delete(f, "last_tested_version")
				f["data"].(obj)["edges"] = []any{obj{"source": "ChatOpenAI-1", "target": "LLMChain-1",
					"sourceHandle": "ChatOpenAI|ChatOpenAI-1|BaseLanguageModel", "targetHandle": "BaseLanguageModel|llm|LLMChain-1"}}
				return f
			}(),
			errors:   []string{CodeLangflow0x},
			warnings: []string{CodeNoInputNode, CodeNoOutputNode},
			check: func(t *testing.T, rep Report) {
				if rep.Format != Format0x || !strings.Contains(rep.Errors[0].Message, "pipe strings") {
					t.Errorf("format %q message %q", rep.Format, rep.Errors[0].Message)
				}
			},
		},
		{
			name: "0.x without outputs or version",
			flow: func() obj {
				f := basic(nil)
				delete(f, "last_tested_version")
				for _, n := range f["data"].(obj)["nodes"].([]any) {
					delete(n.(obj)["data"].(obj)["node"].(obj), "outputs")
				}
				return f
			}(),
			errors: []string{CodeLangflow0x},
		},
		{
			name: "0.x version string",
			flow: func() obj {
				f := basic(nil)
				f["last_tested_version"] = "0.6.4"
				return f
			}(),
			errors: []string{CodeLangflow0x},
		},
		{
			name: "1.x without outputs is not 0.x on that alone",
			flow: func() obj {
				f := basic(nil)
				for _, n := range f["data"].(obj)["nodes"].([]any) {
					delete(n.(obj)["data"].(obj)["node"].(obj), "outputs")
				}
				return f
			}(),
			valid: true,
		},
		{
			name: "many broken edges are capped",
			flow: func() obj {
				var es []obj
				for i := range 100 {
					es = append(es, link("ChatInput-1", fmt.Sprintf("Gone-%d", i)))
				}
				return flow([]obj{component("ChatInput-1", "ChatInput", nil), component("ChatOutput-1", "ChatOutput", nil)}, append(es, link("ChatInput-1", "ChatOutput-1")))
			}(),
			errors: []string{CodeEdgeToMissingNode},
			check: func(t *testing.T, rep Report) {
				if len(rep.Errors) != maxPerCode+1 || !strings.Contains(rep.Errors[maxPerCode].Message, "80 more") {
					t.Errorf("%d errors, last %+v", len(rep.Errors), rep.Errors[len(rep.Errors)-1])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Check(encode(t, tt.flow), Options{})
			if rep.Valid != tt.valid {
				t.Errorf("Valid = %v, want %v (%+v)", rep.Valid, tt.valid, rep.Errors)
			}
			if rep.Valid != (len(rep.Errors) == 0) {
				t.Error("Valid disagrees with Errors")
			}
			if got, want := codes(rep.Errors), sorted(tt.errors); !slices.Equal(got, want) {
				t.Errorf("errors %v, want %v: %+v", got, want, rep.Errors)
			}
			if got, want := codes(rep.Warnings), sorted(tt.warnings); !slices.Equal(got, want) {
				t.Errorf("warnings %v, want %v: %+v", got, want, rep.Warnings)
			}
			if got, want := codes(rep.Info), sorted(tt.info); !slices.Equal(got, want) {
				t.Errorf("info %v, want %v", got, want)
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
		})
	}
}

func TestCustomCode(t *testing.T) {
	stock := component("Model-1", "LanguageModelComponent", obj{"code": codeField("class LanguageModelComponent: pass")})
	edited := component("Model-1", "LanguageModelComponent", obj{"code": codeField("import os\nos.system('id')")})
	edited["data"].(obj)["node"].(obj)["edited"] = true
	custom := component("CustomComponent-1", "CustomComponent", obj{"code": codeField("class C(Component): pass")})
	foreign := component("Mine-1", "Mine", obj{"code": codeField("class Mine(Component): pass")})
	foreign["data"].(obj)["node"].(obj)["metadata"] = obj{"module": "my_components.mine.Mine"}
	noMeta := component("Model-1", "LanguageModelComponent", obj{"code": codeField("class X: pass")})
	delete(noMeta["data"].(obj)["node"].(obj), "metadata")
	emptyCode := component("Model-1", "LanguageModelComponent", obj{"code": codeField("")})
	emptyCode["data"].(obj)["node"].(obj)["edited"] = true

	for _, tt := range []struct {
		name string
		node obj
		warn bool
	}{
		{"stock component", stock, false},
		{"edited in Langflow", edited, true},
		{"Custom Component", custom, true},
		{"module outside Langflow", foreign, true},
		{"no metadata, not edited", noMeta, false},
		{"edited but no code", emptyCode, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := Check(encode(t, basic(tt.node)), Options{})
			if !rep.Valid {
				t.Fatalf("custom code must not refuse the import: %+v", rep.Errors)
			}
			if got := hasCode(rep.Warnings, CodeCustomCode); got != tt.warn {
				t.Errorf("CUSTOM_CODE warning = %v, want %v (%+v)", got, tt.warn, rep.Warnings)
			}
			if tt.warn {
				i := slices.IndexFunc(rep.Warnings, func(p Problem) bool { return p.Code == CodeCustomCode })
				if rep.Warnings[i].NodeID != tt.node["id"] {
					t.Errorf("NodeID %q", rep.Warnings[i].NodeID)
				}
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	const (
		openai   = "sk-proj-Zx81kQm2Lr7TbV4nWc9YhJd3Fg6Sa0PeUo5Xi"
		aws      = "AKIAQ3EGUQ7XMPLE2ZZZ"
		github   = "ghp_R8fK2mLq9TzX4vBn7YcW1pJd6Hs3Ga0Ue5Ni"
		slack    = "xoxb-2041786394-8172635401-Q7mRt2LkZp9XwVb"
		hexKey   = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
		literal  = "hunter2-literal-password-value"
		bearer   = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWhlYWRlcg"
		envValue = "mcp-env-secret-7741"
		hdrJSON  = "json-header-secret-5512"
		cfgHdr   = "cfg-header-secret-9021"
		cfgEnv   = "cfg-env-secret-3310"
	)
	code := strings.Join([]string{
		"import os",
		`client = OpenAI(api_key="` + openai + `")`,
		`AWS_KEY = '` + aws + `'`,
		`headers = {"Authorization": "token ` + github + `"}`,
		`slack = WebClient("` + slack + `")`,
		`my_api_key = "` + hexKey + `"`,
		`fallback = os.environ.get("OPENAI_API_KEY")`,
		`token = self.api_key`,
		`secret_name = "SOME_SECRET_NAME_WITHOUT_DIGITS"`,
	}, "\n")
	mcp := obj{
		"id": "MCPTools-1", "type": "genericNode",
		"data": obj{"id": "MCPTools-1", "type": "MCPTools", "node": obj{
			"outputs":  []any{obj{"name": "tools"}},
			"metadata": obj{"module": "lfx.components.agents.mcp_component.MCPToolsComponent"},
			"template": obj{
				"headers":       obj{"type": "table", "value": []any{obj{"key": "Authorization", "value": bearer}, obj{"key": "X-Empty", "value": ""}}},
				"env":           obj{"type": "str", "list": true, "value": []any{"API_TOKEN=" + envValue, "EMPTY="}},
				"headers_input": obj{"type": "str", "value": `{"X-Api-Key": "` + hdrJSON + `"}`},
				"mcp_server": obj{"type": "mcp", "value": obj{"name": "srv", "config": obj{
					"url": "https://mcp.example.com/sse", "headers": obj{"Authorization": cfgHdr}, "env": obj{"TOKEN": cfgEnv},
				}}},
				"sse_url": obj{"type": "str", "value": "https://mcp.example.com/sse"},
			},
		}},
	}
	group := component("Group-1", "GroupNode", nil)
	inner := component("Inner-1", "OpenAIModel", obj{"api_key": passwordField("inner-group-secret-1", false)})
	group["data"].(obj)["node"].(obj)["flow"] = obj{"data": obj{"nodes": []any{inner}, "edges": []any{}}}

	f := flow([]obj{
		component("ChatInput-1", "ChatInput", nil),
		component("Model-1", "LanguageModelComponent", obj{
			"api_key":        passwordField(literal, false),
			"empty_key":      passwordField("", false),
			"openai_api_key": passwordField("OPENAI_API_KEY", true),
			"other_var":      obj{"type": "str", "value": "ANTHROPIC_API_KEY", "load_from_db": true},
			"dup_var":        passwordField("OPENAI_API_KEY", true),
			"pasted_key":     passwordField(openai+"b", true),
			"code":           codeField(code),
		}),
		mcp,
		group,
		component("ChatOutput-1", "ChatOutput", nil),
	}, []obj{link("ChatInput-1", "Model-1"), link("Model-1", "ChatOutput-1"), link("MCPTools-1", "Model-1"), link("Group-1", "Model-1")})
	raw := encode(t, f)

	rep := Check(raw, Options{})
	if !rep.Valid {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	type key struct{ node, field, kind string }
	want := []key{
		{"Model-1", "api_key", KindPasswordField},
		{"Model-1", "pasted_key", KindPasswordField},
		{"Model-1", "code", KindAPIKeyInCode}, // openai
		{"Model-1", "code", KindAPIKeyInCode}, // aws
		{"Model-1", "code", KindAPIKeyInCode}, // github
		{"Model-1", "code", KindAPIKeyInCode}, // slack
		{"Model-1", "code", KindAPIKeyInCode}, // hex after api_key =
		{"MCPTools-1", "env.API_TOKEN", KindMCPEnv},
		{"MCPTools-1", "headers.Authorization", KindMCPHeader},
		{"MCPTools-1", "headers_input.X-Api-Key", KindMCPHeader},
		{"MCPTools-1", "mcp_server.config.env.TOKEN", KindMCPEnv},
		{"MCPTools-1", "mcp_server.config.headers.Authorization", KindMCPHeader},
		{"Group-1/Inner-1", "api_key", KindPasswordField},
	}
	var got []key
	for _, s := range rep.Secrets {
		got = append(got, key{s.NodeID, s.Field, s.Kind})
	}
	sortKeys := func(k []key) {
		slices.SortFunc(k, func(a, b key) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	}
	sortKeys(got)
	sortKeys(want)
	if !slices.Equal(got, want) {
		t.Errorf("secrets:\n got %v\nwant %v", got, want)
	}
	if gv := []string{"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}; !slices.Equal(rep.GlobalVariables, gv) {
		t.Errorf("GlobalVariables = %v, want %v", rep.GlobalVariables, gv)
	}
	all := []string{openai, aws, github, slack, hexKey, literal, bearer, envValue, hdrJSON, cfgHdr, cfgEnv, "inner-group-secret-1"}
	reportJSON := encode(t, rep)
	mustNotContain(t, reportJSON, all...)
	for _, s := range rep.Secrets {
		if s.Preview == "" || strings.Count(s.Preview, "…") != 1 {
			t.Errorf("preview %q", s.Preview)
		}
	}
	if i := slices.IndexFunc(rep.Secrets, func(s Secret) bool { return s.Field == "api_key" && s.NodeID == "Model-1" }); rep.Secrets[i].Preview != fmt.Sprintf("…(%d chars)", len(literal)) {
		t.Errorf("literal preview %q", rep.Secrets[i].Preview)
	}
	if !slices.ContainsFunc(rep.Secrets, func(s Secret) bool { return s.Preview == fmt.Sprintf("sk-proj-…(%d chars)", len(openai)) }) {
		t.Errorf("no sk-proj- preview in %+v", rep.Secrets)
	}

	out, srep, err := Strip(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(srep.Secrets) != len(rep.Secrets) {
		t.Errorf("Strip reported %d secrets, Check %d", len(srep.Secrets), len(rep.Secrets))
	}
	mustNotContain(t, out, all...)

	// Still the same export: valid, same graph, same variables, names kept,
	// nothing left to strip.
	again := Check(out, Options{})
	if !again.Valid || again.Stats != rep.Stats || !slices.Equal(again.GlobalVariables, rep.GlobalVariables) || len(again.Secrets) != 0 {
		t.Errorf("stripped export: valid=%v stats=%+v globals=%v secrets=%+v", again.Valid, again.Stats, again.GlobalVariables, again.Secrets)
	}
	var doc obj
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	nodes := doc["data"].(obj)["nodes"].([]any)
	tmpl := nodes[1].(obj)["data"].(obj)["node"].(obj)["template"].(obj)
	if v := tmpl["api_key"].(obj)["value"]; v != "" {
		t.Errorf("api_key = %q, want blank", v)
	}
	if v := tmpl["openai_api_key"].(obj)["value"]; v != "OPENAI_API_KEY" {
		t.Errorf("global variable reference changed to %q", v)
	}
	src := tmpl["code"].(obj)["value"].(string)
	for _, keep := range []string{`api_key="<redacted>"`, `os.environ.get("OPENAI_API_KEY")`, "token = self.api_key", "SOME_SECRET_NAME_WITHOUT_DIGITS"} {
		if !strings.Contains(src, keep) {
			t.Errorf("stripped code lacks %q:\n%s", keep, src)
		}
	}
	mt := nodes[2].(obj)["data"].(obj)["node"].(obj)["template"].(obj)
	if env := mt["env"].(obj)["value"].([]any); env[0] != "API_TOKEN=" {
		t.Errorf("env = %v", env)
	}
	if h := mt["headers_input"].(obj)["value"]; h != `{"X-Api-Key":""}` {
		t.Errorf("headers_input = %v", h)
	}
	if u := mt["sse_url"].(obj)["value"]; u != "https://mcp.example.com/sse" {
		t.Errorf("sse_url changed: %v", u)
	}
}

// Nodes the graph checks skip (duplicate ids, no id) still lose their
// secrets.
func TestStripSkippedNodes(t *testing.T) {
	dup := component("Model-1", "LanguageModelComponent", obj{"api_key": passwordField("duplicate-node-secret-1", false)})
	noID := component("", "LanguageModelComponent", obj{"api_key": passwordField("no-id-node-secret-1", false)})
	delete(noID, "id")
	f := basic(nil)
	f["data"].(obj)["nodes"] = append(f["data"].(obj)["nodes"].([]any), dup, noID)
	out, rep, err := Strip(encode(t, f))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Valid || !hasCode(rep.Errors, CodeDuplicateNodeID) || !hasCode(rep.Errors, CodeMalformedNode) {
		t.Errorf("errors %+v", rep.Errors)
	}
	if len(rep.Secrets) != 2 || rep.Secrets[1].NodeID != "#5" {
		t.Errorf("secrets %+v", rep.Secrets)
	}
	mustNotContain(t, out, "duplicate-node-secret-1", "no-id-node-secret-1")
}

// A password-flagged code field is blanked, not re-scanned; groups nested
// too deep are refused, not silently skipped.
func TestStripEdgeCases(t *testing.T) {
	pwCode := passwordField("pw code sk-aaaaaaaaaaaaaaaaaaaaaaaaaa1 and more", false)
	pwCode["type"] = "code"
	out, rep, err := Strip(encode(t, basic(component("Model-1", "X", obj{"code": pwCode}))))
	if err != nil || len(rep.Secrets) != 1 {
		t.Fatalf("err=%v secrets=%+v", err, rep.Secrets)
	}
	mustNotContain(t, out, "pw code", "and more")

	leaf := component("Leaf", "X", obj{"api_key": passwordField("deep-group-secret-1", false)})
	for i := range maxGroupDepth + 1 {
		g := component(fmt.Sprintf("Group-%d", i), "GroupNode", nil)
		g["data"].(obj)["node"].(obj)["flow"] = obj{"data": obj{"nodes": []any{leaf}}}
		leaf = g
	}
	raw := encode(t, basic(leaf))
	if _, rep, err := Strip(raw); err == nil || !hasCode(rep.Errors, CodeTooDeep) {
		t.Errorf("err=%v errors=%+v", err, rep.Errors)
	}
}

func TestStripKeepsExport(t *testing.T) {
	f := basic(component("Model-1", "LanguageModelComponent", obj{
		"api_key":     passwordField("literal-secret-value-123", false),
		"temperature": obj{"type": "float", "value": json.Number("0.10")},
		"big":         obj{"type": "int", "value": json.Number("12345678901234567890")},
		"template":    obj{"type": "prompt", "value": "Answer <b>briefly</b> & politely"},
	}))
	f["id"] = "flow-id"
	f["user_id"] = "user-id"
	f["folder_id"] = "folder-id"
	f["webhook"] = true
	out, rep, err := Strip(encode(t, f))
	if err != nil || !rep.Valid || len(rep.Secrets) != 1 {
		t.Fatalf("err=%v valid=%v secrets=%+v", err, rep.Valid, rep.Secrets)
	}
	mustNotContain(t, out, "literal-secret-value-123")
	for _, keep := range []string{`"0.10"`, "12345678901234567890", "Answer <b>briefly</b> & politely", `"user_id":"user-id"`, `"folder_id":"folder-id"`, `"webhook":true`, `"id":"flow-id"`} {
		if keep == `"0.10"` {
			keep = `0.10`
		}
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("stripped export lost %s", keep)
		}
	}
	if !json.Valid(out) {
		t.Error("invalid JSON")
	}
}

func TestConcurrentUse(t *testing.T) {
	raw := encode(t, basic(component("Model-1", "LanguageModelComponent", obj{"api_key": passwordField("concurrent-secret-1", false)})))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				out, rep, err := Strip(raw)
				if err != nil || len(rep.Secrets) != 1 || bytes.Contains(out, []byte("concurrent-secret-1")) {
					t.Errorf("err=%v secrets=%d", err, len(rep.Secrets))
					return
				}
				if r := Check(raw, Options{}); len(r.Secrets) != 1 {
					t.Errorf("Check after Strip saw %d secrets", len(r.Secrets))
					return
				}
			}
		})
	}
	wg.Wait()
}
