// Package flowcheck validates Langflow flow exports before they are stored or
// provisioned, finds the secrets they carry and strips them.
//
// Langflow itself checks almost nothing when a flow is imported, so a bad
// export only fails later, on the runtime, in front of a buyer. The checks
// here are the ones that decide whether an import is refused (Report.Errors),
// what the provider should look at (Report.Warnings), and what we must never
// keep (Report.Secrets). Real Langflow flows have cycles (loop edges), no
// input node, several inputs or outputs, note nodes and custom code: none of
// those is an error.
//
// Check and Strip are pure functions over the bytes they are given: no
// package state, safe for concurrent use, and bounded by Options so a hostile
// upload cannot make them allocate or recurse without limit.
package flowcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Defaults for Options fields left at zero. They are far above any real
// flow (the largest Langflow starter project is 336 KB with 17 nodes) and
// low enough that one request cannot tie up a server.
const (
	DefaultMaxBytes = 8 << 20
	DefaultMaxNodes = 2000
	DefaultMaxEdges = 10000
	DefaultMaxDepth = 256
)

// Options bounds the work Check and Strip do. Zero or negative values take
// the defaults above.
type Options struct {
	// MaxBytes is the largest export accepted (TOO_LARGE above it).
	MaxBytes int
	// MaxNodes bounds nodes, counting those inside group nodes (TOO_MANY_NODES).
	MaxNodes int
	// MaxEdges bounds data.edges (TOO_MANY_EDGES).
	MaxEdges int
	// MaxDepth bounds JSON nesting (TOO_DEEP). Langflow exports nest about
	// 10 levels; the limit keeps decoding and walking cheap on crafted input.
	MaxDepth int
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = DefaultMaxNodes
	}
	if o.MaxEdges <= 0 {
		o.MaxEdges = DefaultMaxEdges
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	return o
}

// Problem codes. They are stable: the portal and API clients match on them;
// the messages are for people and may change.
const (
	// Errors: the import is refused.
	CodeEmptyInput        = "EMPTY_INPUT"        // 0 bytes or only whitespace
	CodeInvalidJSON       = "INVALID_JSON"       // not parseable JSON
	CodeNotAFlow          = "NOT_A_FLOW"         // not an object, or no data.nodes array
	CodeEmptyFlow         = "EMPTY_FLOW"         // no component nodes (only notes, or none)
	CodeTooLarge          = "TOO_LARGE"          // over Options.MaxBytes
	CodeTooDeep           = "TOO_DEEP"           // nesting over Options.MaxDepth
	CodeTooManyNodes      = "TOO_MANY_NODES"     // over Options.MaxNodes
	CodeTooManyEdges      = "TOO_MANY_EDGES"     // over Options.MaxEdges
	CodeLangflow0x        = "LANGFLOW_0X_EXPORT" // made by Langflow 0.x; 1.x cannot run it
	CodeMalformedNode     = "MALFORMED_NODE"     // a node that is not an object or has no id
	CodeMalformedEdge     = "MALFORMED_EDGE"     // an edge that is not an object or lacks source/target
	CodeDuplicateNodeID   = "DUPLICATE_NODE_ID"
	CodeEdgeToMissingNode = "EDGE_TO_MISSING_NODE"

	// Warnings: the flow imports, the provider should know.
	CodeNoInputNode     = "NO_INPUT_NODE" // no Chat Input or Text Input
	CodeNoChatInput     = "NO_CHAT_INPUT" // inputs are Text Inputs only
	CodeMultipleInputs  = "MULTIPLE_INPUTS"
	CodeNoOutputNode    = "NO_OUTPUT_NODE" // no Chat/Text/Data Output
	CodeMultipleOutputs = "MULTIPLE_OUTPUTS"
	CodeCustomCode      = "CUSTOM_CODE" // code that is not a stock component's
	CodeNoteIgnored     = "NOTE_NODE_IGNORED"
	CodeDisconnected    = "DISCONNECTED_SUBGRAPHS"

	// Info: facts, not concerns.
	CodeCycle = "CYCLE" // loop edges; legal in Langflow 1.x
)

// Formats reported in Report.Format.
const (
	Format1x      = "1.x"
	Format0x      = "0.x"
	FormatUnknown = "unknown"
)

// Secret kinds reported in Secret.Kind.
const (
	KindPasswordField = "password_field"
	KindAPIKeyInCode  = "api_key_in_code"
	KindMCPHeader     = "mcp_header"
	KindMCPEnv        = "mcp_env"
)

// Problem is one finding. NodeID is empty for findings about the whole flow.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	NodeID  string `json:"nodeId,omitempty"`
}

// Secret is a credential found in the export. It never carries the value:
// reports are shown in the portal and logged, and the point of finding
// secrets is that they do not travel further.
type Secret struct {
	// NodeID is the node's id; for a node inside a group node it is
	// "<group id>/<inner id>".
	NodeID string `json:"nodeId"`
	// Field is the template field, with a dotted suffix for a header or env
	// entry inside it (e.g. "headers_input.Authorization").
	Field   string `json:"field"`
	Kind    string `json:"kind"`
	Preview string `json:"preview"`
}

// Stats describes the graph. Nodes counts components (notes excluded;
// they are in Notes); Inputs and Outputs count the interface components
// Langflow feeds and reads on a run.
type Stats struct {
	Nodes     int  `json:"nodes"`
	Notes     int  `json:"notes"`
	Edges     int  `json:"edges"`
	Inputs    int  `json:"inputs"`
	Outputs   int  `json:"outputs"`
	Subgraphs int  `json:"subgraphs"`
	HasCycles bool `json:"hasCycles"`
}

// Report is the outcome of Check. Valid is false exactly when Errors is not
// empty.
type Report struct {
	Valid    bool      `json:"valid"`
	Errors   []Problem `json:"errors"`
	Warnings []Problem `json:"warnings"`
	// Info holds facts worth showing that need no action (cycles).
	Info    []Problem `json:"info"`
	Secrets []Secret  `json:"secrets"`
	// GlobalVariables are the Langflow global variables the flow reads
	// (values of load_from_db fields), sorted and deduplicated. They must
	// exist on the runtime for the flow to run.
	GlobalVariables []string `json:"globalVariables"`
	Stats           Stats    `json:"stats"`
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Format          string   `json:"format"`
}

// Check validates a flow export. It never fails: everything wrong with the
// input is in the report.
func Check(raw []byte, opts Options) Report {
	rep, _ := run(raw, opts.withDefaults())
	return rep
}

// ErrNotStrippable is returned by Strip when the input is not a flow export
// within the limits, so there is nothing that could safely be stored.
var ErrNotStrippable = errors.New("flowcheck: export cannot be stripped")

// Strip returns the export with every secret Check finds blanked: password
// fields and MCP header/env values become "", keys inside code become
// "<redacted>". The result is the same export structure re-encoded (object
// keys sorted, numbers kept as written), so it imports like the original.
// The report describes the original, so the provider sees what was
// removed. Strip also returns a result for invalid flows (a 0.x export can
// be stripped); callers refuse the import on !Report.Valid. The error wraps
// ErrNotStrippable when the input is not a flow export (no data.nodes) or
// is over the default limits, so not every node could be scanned.
func Strip(raw []byte) ([]byte, Report, error) {
	return StripWith(raw, Options{})
}

// StripWith is Strip with explicit limits.
func StripWith(raw []byte, opts Options) ([]byte, Report, error) {
	rep, doc := run(raw, opts.withDefaults())
	if doc == nil {
		return nil, rep, fmt.Errorf("%w: %s", ErrNotStrippable, firstMessage(rep))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Code and prompts are full of <, > and &: escaping them would change
	// every stored byte for nothing.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, rep, fmt.Errorf("%w: %v", ErrNotStrippable, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), rep, nil
}

func firstMessage(rep Report) string {
	if len(rep.Errors) > 0 {
		return rep.Errors[0].Message
	}
	return "unknown reason"
}

// run decodes raw and analyses it. doc is the decoded object with the
// secrets blanked, or nil when the input is not a flow export within the
// limits (so not every node could be scanned).
func run(raw []byte, opts Options) (Report, map[string]any) {
	a := newAnalyzer(opts)
	doc := a.decode(raw)
	if doc != nil {
		a.analyze(doc)
	}
	if !a.complete {
		doc = nil
	}
	return a.finish(), doc
}

// decode enforces the size and depth limits before decoding, so the decoder
// never sees input that could make it slow or deep.
func (a *analyzer) decode(raw []byte) map[string]any {
	if len(raw) > a.opts.MaxBytes {
		a.errorf(CodeTooLarge, "", "The export is %d bytes; the limit is %d bytes.", len(raw), a.opts.MaxBytes)
		return nil
	}
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // editors on Windows add a BOM
	if len(bytes.TrimSpace(raw)) == 0 {
		a.errorf(CodeEmptyInput, "", "The file is empty: export the flow from Langflow (Export → JSON) and upload that file.")
		return nil
	}
	if d := jsonDepth(raw, a.opts.MaxDepth); d > a.opts.MaxDepth {
		a.errorf(CodeTooDeep, "", "The JSON nests more than %d levels deep; a Langflow export nests about 10.", a.opts.MaxDepth)
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	// Numbers stay as written so Strip does not turn 1e3 into 1000 or lose
	// precision on large integers.
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		a.errorf(CodeInvalidJSON, "", "The file is not valid JSON (%v).", err)
		return nil
	}
	if _, err := dec.Token(); err != io.EOF {
		a.errorf(CodeInvalidJSON, "", "The file has content after the JSON value; upload a single flow export.")
		return nil
	}
	doc, ok := v.(map[string]any)
	if !ok {
		a.errorf(CodeNotAFlow, "", "The JSON is %s, not an object: a Langflow flow export is an object with name, description and data.", jsonKind(v))
		return nil
	}
	return doc
}

// jsonDepth returns the maximum nesting depth of raw, stopping early once it
// passes limit. It only tracks strings and brackets, which is enough for a
// bound: malformed JSON is left to the decoder.
func jsonDepth(raw []byte, limit int) int {
	depth, maxDepth := 0, 0
	inString, escaped := false, false
	for _, c := range raw {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				maxDepth = depth
				if maxDepth > limit {
					return maxDepth
				}
			}
		case '}', ']':
			depth--
		}
	}
	return maxDepth
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return "not an object"
}
