package flowcheck

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/internal/testsupport/fixtures"
)

// fixtureDir is ../shared/fixtures/langflow (see testsupport/fixtures).
func fixtureDir(t testing.TB) string {
	t.Helper()
	return fixtures.Dir(t, "langflow")
}

// fixtureFiles lists every .json file under the fixture directory, so a
// fixture added later is checked (and fails until the table covers it).
func fixtureFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

type fixtureWant struct {
	valid    bool
	format   string
	errors   []string // sorted, deduplicated codes
	warnings []string // sorted, deduplicated codes
	cycles   bool
	secrets  int
	globals  []string
	inputs   int
	outputs  int
	notes    int
	nodes    int
}

// The expectations follow SOURCES.md: what each fixture is said to
// exercise is what the report must show.
var fixtureWants = map[string]fixtureWant{
	// ChatInput → Prompt → LanguageModelComponent → ChatOutput; 2 noteNodes,
	// one with data.type missing.
	"Basic Prompting.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 2, nodes: 4},
	"Memory Chatbot.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 1, nodes: 5},
	// Two sub-graphs (ingest and retrieve), load_from_db global variables.
	"Vector Store RAG.json": {valid: true, format: Format1x, warnings: []string{CodeDisconnected, CodeNoteIgnored},
		globals: []string{"ASTRA_DB_APPLICATION_TOKEN", "OPENAI_API_KEY"}, inputs: 1, outputs: 1, notes: 6, nodes: 11},
	// AWS/GCP secret fields with load_from_db but empty: neither secrets nor
	// variables.
	"Document Q&A.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 1, nodes: 5},
	// TextInput, no ChatInput.
	"Blog Writer.json": {valid: true, format: Format1x, warnings: []string{CodeNoChatInput, CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 1, nodes: 6},
	"Simple Agent.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 2, nodes: 5},
	"Basic Prompt Chaining.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 1, nodes: 5},
	// TextInput → KnowledgeRetrieval → ChatOutput.
	"Knowledge Retrieval.json": {valid: true, format: Format1x, warnings: []string{CodeNoChatInput, CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 1, nodes: 3},
	// api_key is a password field with load_from_db: not a secret.
	"Financial Report Parser.json": {valid: true, format: Format1x, warnings: []string{CodeNoteIgnored},
		inputs: 1, outputs: 1, notes: 2, nodes: 4},
	// Langflow 0.2–0.4: pipe-string handles, LangChain classes.
	"other/Vector Store.json": {valid: false, format: Format0x, errors: []string{CodeLangflow0x},
		warnings: []string{CodeNoInputNode, CodeNoOutputNode}, nodes: 7},
	// Langflow 0.5/0.6: baseClasses handles, no outputs, no ChatInput/Output.
	"other/Basic Chat with Prompt and History.json": {valid: false, format: Format0x, errors: []string{CodeLangflow0x},
		warnings: []string{CodeNoInputNode, CodeNoOutputNode}, nodes: 4},
}

func codes(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		if !slices.Contains(out, p.Code) {
			out = append(out, p.Code)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestFixtures(t *testing.T) {
	dir := fixtureDir(t)
	files := fixtureFiles(t, dir)
	for name := range fixtureWants {
		if !slices.Contains(files, name) {
			t.Errorf("fixture %s is expected but not found under %s", name, dir)
		}
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			want, ok := fixtureWants[name]
			if !ok {
				t.Fatalf("fixture %s has no expectation: add it to fixtureWants", name)
			}
			raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil {
				t.Fatal(err)
			}
			rep := Check(raw, Options{})
			t.Logf("valid=%v format=%s errors=%v warnings=%v info=%v secrets=%d globals=%v stats=%+v",
				rep.Valid, rep.Format, codes(rep.Errors), codes(rep.Warnings), codes(rep.Info), len(rep.Secrets), rep.GlobalVariables, rep.Stats)
			if rep.Valid != want.valid {
				t.Errorf("Valid = %v, want %v (errors %+v)", rep.Valid, want.valid, rep.Errors)
			}
			if rep.Format != want.format {
				t.Errorf("Format = %q, want %q", rep.Format, want.format)
			}
			want.errors, want.warnings = sorted(want.errors), sorted(want.warnings)
			if got := codes(rep.Errors); !slices.Equal(got, want.errors) {
				t.Errorf("error codes = %v, want %v", got, want.errors)
			}
			if got := codes(rep.Warnings); !slices.Equal(got, want.warnings) {
				t.Errorf("warning codes = %v, want %v (%+v)", got, want.warnings, rep.Warnings)
			}
			if rep.Stats.HasCycles != want.cycles {
				t.Errorf("HasCycles = %v, want %v", rep.Stats.HasCycles, want.cycles)
			}
			if len(rep.Secrets) != want.secrets {
				t.Errorf("secrets = %+v, want %d", rep.Secrets, want.secrets)
			}
			if !slices.Equal(rep.GlobalVariables, want.globals) && !(len(rep.GlobalVariables) == 0 && len(want.globals) == 0) {
				t.Errorf("GlobalVariables = %v, want %v", rep.GlobalVariables, want.globals)
			}
			s := rep.Stats
			if s.Inputs != want.inputs || s.Outputs != want.outputs || s.Notes != want.notes || s.Nodes != want.nodes {
				t.Errorf("stats = %+v, want inputs %d outputs %d notes %d nodes %d", s, want.inputs, want.outputs, want.notes, want.nodes)
			}
			if rep.Name == "" {
				t.Error("Name is empty")
			}
			if want.format == Format0x {
				msg := rep.Errors[0].Message
				for _, part := range []string{"0.x", "1.x", "export it again"} {
					if !strings.Contains(msg, part) {
						t.Errorf("0.x message %q does not mention %q", msg, part)
					}
				}
			}

			// Strip keeps a fixture the same flow: same report, and nothing
			// to strip means nothing lost but key order and spacing.
			out, srep, err := Strip(raw)
			if err != nil {
				t.Fatalf("Strip: %v", err)
			}
			again := Check(out, Options{})
			if again.Valid != rep.Valid || !slices.Equal(codes(again.Errors), codes(rep.Errors)) ||
				!slices.Equal(codes(again.Warnings), codes(rep.Warnings)) || again.Stats != rep.Stats ||
				!slices.Equal(again.GlobalVariables, rep.GlobalVariables) || again.Name != rep.Name {
				t.Errorf("re-checking the stripped export changed the report:\n%+v\nvs\n%+v", again, rep)
			}
			if len(srep.Secrets) != len(rep.Secrets) || len(again.Secrets) != 0 {
				t.Errorf("Strip report secrets %d, Check %d, after strip %d", len(srep.Secrets), len(rep.Secrets), len(again.Secrets))
			}
			if bytes.Contains(out, []byte("<redacted>")) && len(rep.Secrets) == 0 {
				t.Error("Strip redacted something Check did not report")
			}
		})
	}
}
