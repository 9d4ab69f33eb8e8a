package flowcheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// maxPerCode bounds how many problems of one code are listed; a crafted
// export with 10,000 broken edges gets 20 of them and a count, so reports
// stay small enough to show and store.
const maxPerCode = 20

// maxGroupDepth bounds recursion into group nodes (data.node.flow), which
// Langflow nests at most a couple of levels in practice.
const maxGroupDepth = 8

// Langflow's interface component types (lfx graph schema: INPUT_COMPONENTS,
// OUTPUT_COMPONENTS). The gateway sends input_value to inputs and reads the
// answer from outputs. Webhook is an input too, but it takes its payload
// from the webhook endpoint, not from a run's input_value, so it does not
// count here.
var (
	inputTypes  = []string{"ChatInput", "TextInput"}
	outputTypes = []string{"ChatOutput", "TextOutput", "DataOutput"}
)

// stockModulePrefixes are the Python packages Langflow 1.x ships its
// components in (metadata.module of a stock node).
var stockModulePrefixes = []string{"lfx.components.", "langflow.components."}

// analyzer walks one decoded export. It blanks every secret it reports in
// the decoded tree as it goes: the tree is private to one call, Check drops
// it and Strip encodes it, so what Check reports and what Strip removes
// cannot drift apart.
type analyzer struct {
	opts    Options
	rep     Report
	counts  map[string]int
	omitted map[string]int
	globals map[string]struct{}
	// nodesSeen counts nodes including those inside groups, for MaxNodes.
	nodesSeen int
	// complete is set once every node was scanned for secrets; Strip must
	// not hand back an export it did not fully look at. unscanned records
	// group nodes left out for nesting too deep.
	complete, unscanned bool
}

func newAnalyzer(opts Options) *analyzer {
	return &analyzer{
		opts:    opts,
		rep:     Report{Format: FormatUnknown},
		counts:  map[string]int{},
		omitted: map[string]int{},
		globals: map[string]struct{}{},
	}
}

func (a *analyzer) add(list *[]Problem, code, nodeID, format string, args ...any) {
	a.counts[code]++
	if a.counts[code] > maxPerCode {
		a.omitted[code]++
		return
	}
	*list = append(*list, Problem{Code: code, Message: fmt.Sprintf(format, args...), NodeID: nodeID})
}

func (a *analyzer) errorf(code, nodeID, format string, args ...any) {
	a.add(&a.rep.Errors, code, nodeID, format, args...)
}

func (a *analyzer) warnf(code, nodeID, format string, args ...any) {
	a.add(&a.rep.Warnings, code, nodeID, format, args...)
}

func (a *analyzer) infof(code, nodeID, format string, args ...any) {
	a.add(&a.rep.Info, code, nodeID, format, args...)
}

func (a *analyzer) finish() Report {
	codes := make([]string, 0, len(a.omitted))
	for c := range a.omitted {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		p := Problem{Code: c, Message: fmt.Sprintf("%d more %s findings are not listed.", a.omitted[c], c)}
		switch {
		case slices.ContainsFunc(a.rep.Errors, func(q Problem) bool { return q.Code == c }):
			a.rep.Errors = append(a.rep.Errors, p)
		case slices.ContainsFunc(a.rep.Warnings, func(q Problem) bool { return q.Code == c }):
			a.rep.Warnings = append(a.rep.Warnings, p)
		default:
			a.rep.Info = append(a.rep.Info, p)
		}
	}
	a.rep.GlobalVariables = make([]string, 0, len(a.globals))
	for g := range a.globals {
		a.rep.GlobalVariables = append(a.rep.GlobalVariables, g)
	}
	sort.Strings(a.rep.GlobalVariables)
	// Empty slices, not nil, so the JSON and GraphQL forms are [] and
	// clients need no null checks.
	for _, l := range []*[]Problem{&a.rep.Errors, &a.rep.Warnings, &a.rep.Info} {
		if *l == nil {
			*l = []Problem{}
		}
	}
	if a.rep.Secrets == nil {
		a.rep.Secrets = []Secret{}
	}
	a.rep.Valid = len(a.rep.Errors) == 0
	return a.rep
}

// node is a top-level node as the graph checks need it.
type node struct {
	id    string
	typ   string         // data.type, the component type
	body  map[string]any // data.node: template, outputs, metadata...
	note  bool
	index int
}

type edge struct {
	source, target string
	index          int
}

func (a *analyzer) analyze(doc map[string]any) {
	a.rep.Name, _ = doc["name"].(string)
	a.rep.Description, _ = doc["description"].(string)

	data, _ := doc["data"].(map[string]any)
	if data == nil {
		a.errorf(CodeNotAFlow, "", "The JSON has no \"data\" object, so it is not a Langflow flow export (or it is a single component export). Export the whole flow from Langflow.")
		return
	}
	rawNodes, ok := data["nodes"].([]any)
	if !ok {
		a.errorf(CodeNotAFlow, "", "The JSON has no \"data.nodes\" array, so it is not a Langflow flow export.")
		return
	}
	rawEdges, _ := data["edges"].([]any)
	if data["edges"] != nil && rawEdges == nil {
		a.errorf(CodeNotAFlow, "", "\"data.edges\" is not an array.")
		return
	}
	if len(rawNodes) > a.opts.MaxNodes {
		a.errorf(CodeTooManyNodes, "", "The flow has %d nodes; the limit is %d.", len(rawNodes), a.opts.MaxNodes)
		return
	}
	if len(rawEdges) > a.opts.MaxEdges {
		a.errorf(CodeTooManyEdges, "", "The flow has %d edges; the limit is %d.", len(rawEdges), a.opts.MaxEdges)
		return
	}

	nodes := a.readNodes(rawNodes)
	edges := a.readEdges(rawEdges)
	a.rep.Stats.Edges = len(rawEdges)

	lastTested, _ := doc["last_tested_version"].(string)
	a.detectFormat(lastTested, nodes, rawEdges)

	// Secrets, global variables and custom code are looked for even in flows
	// that will be refused: Strip still removes them, and the provider
	// learns what the file contained.
	// Every node object is scanned, including duplicates and nodes without
	// an id that the graph checks skip: Strip must not keep their secrets.
	for i, rn := range rawNodes {
		m, _ := rn.(map[string]any)
		d, _ := m["data"].(map[string]any)
		body, _ := d["node"].(map[string]any)
		if body == nil {
			continue
		}
		id, _ := m["id"].(string)
		if id == "" {
			id = fmt.Sprintf("#%d", i+1)
		}
		typ, _ := d["type"].(string)
		a.scanComponent(id, typ, body, 0)
	}
	if a.nodesSeen > a.opts.MaxNodes {
		a.errorf(CodeTooManyNodes, "", "The flow has %d nodes counting those inside groups; the limit is %d.", a.nodesSeen, a.opts.MaxNodes)
	} else {
		a.complete = !a.unscanned
	}

	a.checkGraph(nodes, edges)
}

func (a *analyzer) readNodes(rawNodes []any) []node {
	nodes := make([]node, 0, len(rawNodes))
	seen := map[string]int{}
	a.nodesSeen += len(rawNodes)
	for i, rn := range rawNodes {
		m, ok := rn.(map[string]any)
		if !ok {
			a.errorf(CodeMalformedNode, "", "Node #%d is not an object.", i+1)
			continue
		}
		id, _ := m["id"].(string)
		if id == "" {
			a.errorf(CodeMalformedNode, "", "Node #%d has no id.", i+1)
			continue
		}
		if first, dup := seen[id]; dup {
			a.errorf(CodeDuplicateNodeID, id, "Nodes #%d and #%d share the id %q; Langflow wires edges by id, so the flow would be ambiguous. Give each node its own id (duplicating the component in Langflow does this).", first+1, i+1, id)
			continue
		}
		seen[id] = i
		n := node{id: id, index: i}
		d, _ := m["data"].(map[string]any)
		if d != nil {
			n.typ, _ = d["type"].(string)
			n.body, _ = d["node"].(map[string]any)
		}
		// Langflow's canvas renders notes from type "noteNode"; older
		// exports also left notes with data.type missing (ids "undefined-…").
		nodeType, _ := m["type"].(string)
		n.note = nodeType == "noteNode" || n.typ == "" || n.typ == "note"
		nodes = append(nodes, n)
	}
	return nodes
}

func (a *analyzer) readEdges(rawEdges []any) []edge {
	edges := make([]edge, 0, len(rawEdges))
	for i, re := range rawEdges {
		m, ok := re.(map[string]any)
		if !ok {
			a.errorf(CodeMalformedEdge, "", "Edge #%d is not an object.", i+1)
			continue
		}
		src, _ := m["source"].(string)
		dst, _ := m["target"].(string)
		if src == "" || dst == "" {
			a.errorf(CodeMalformedEdge, "", "Edge #%d has no source or target node id.", i+1)
			continue
		}
		edges = append(edges, edge{source: src, target: dst, index: i})
	}
	return edges
}

// detectFormat tells 1.x exports from 0.x ones, which Langflow 1.x imports
// without complaint but cannot run. The rule needs one decisive sign, or
// two weak ones, because 1.x server-side exports (GET /api/v1/flows/{id})
// have no last_tested_version either:
//   - decisive: an edge handle in the 0.2–0.4 pipe form "Type|id|Type";
//   - decisive: last_tested_version "0.…";
//   - weak: every component lacks data.node.outputs (1.x components always
//     declare their outputs; 0.x LangChain-class nodes have none);
//   - weak: handles carry 0.5/0.6 "baseClasses" (1.x has "output_types");
//   - weak: no last_tested_version.
//
// 0.x needs "no outputs" plus one more weak sign.
func (a *analyzer) detectFormat(lastTested string, nodes []node, rawEdges []any) {
	var reasons []string
	decisive := false
	if strings.HasPrefix(lastTested, "0.") {
		decisive = true
		reasons = append(reasons, fmt.Sprintf("last_tested_version is %s", lastTested))
	}
	pipe, baseClasses := "", false
	for _, re := range rawEdges {
		m, _ := re.(map[string]any)
		if m == nil {
			continue
		}
		for _, k := range []string{"sourceHandle", "targetHandle"} {
			h, _ := m[k].(string)
			t := strings.TrimSpace(h)
			if pipe == "" && strings.Contains(t, "|") && !strings.HasPrefix(t, "{") {
				pipe = h
			}
			if strings.Contains(h, "œbaseClassesœ") || strings.Contains(h, `"baseClasses"`) {
				baseClasses = true
			}
		}
		if d, _ := m["data"].(map[string]any); d != nil {
			if sh, _ := d["sourceHandle"].(map[string]any); sh != nil {
				if _, ok := sh["baseClasses"]; ok {
					baseClasses = true
				}
			}
		}
	}
	if pipe != "" {
		decisive = true
		reasons = append(reasons, fmt.Sprintf("edge handles are pipe strings such as %q", truncate(pipe, 80)))
	}
	components, withOutputs := 0, 0
	for _, n := range nodes {
		if n.note {
			continue
		}
		components++
		if outs, _ := n.body["outputs"].([]any); len(outs) > 0 {
			withOutputs++
		}
	}
	noOutputs := components > 0 && withOutputs == 0
	weak := 0
	if baseClasses {
		weak++
	}
	if lastTested == "" {
		weak++
	}
	if noOutputs && (decisive || weak > 0) {
		reasons = append(reasons, "its components are LangChain classes without declared outputs")
	}
	if noOutputs && baseClasses {
		reasons = append(reasons, "edge handles carry 0.x \"baseClasses\" instead of \"output_types\"")
	}
	if noOutputs && lastTested == "" {
		reasons = append(reasons, "it has no last_tested_version")
	}
	switch {
	case decisive || (noOutputs && weak > 0):
		a.rep.Format = Format0x
		a.errorf(CodeLangflow0x, "", "This is a Langflow 0.x export (%s). Langflow 1.x may accept the file but cannot run it: the component model and edge format changed in 1.0. Rebuild or open the flow in Langflow 1.x, export it again from there, and import that file.", strings.Join(reasons, "; "))
	case strings.HasPrefix(lastTested, "1.") || withOutputs > 0:
		a.rep.Format = Format1x
	}
}

// checkGraph checks ids and edges, counts inputs and outputs, finds cycles
// and disconnected parts. Note nodes are not part of the graph Langflow runs.
func (a *analyzer) checkGraph(nodes []node, edges []edge) {
	index := make(map[string]int, len(nodes))
	var components []node
	for _, n := range nodes {
		if n.note {
			a.rep.Stats.Notes++
			a.warnf(CodeNoteIgnored, n.id, "Note %q is documentation on the canvas; it is kept but does not run.", n.id)
			continue
		}
		index[n.id] = len(components)
		components = append(components, n)
	}
	a.rep.Stats.Nodes = len(components)
	if len(components) == 0 && len(a.rep.Errors) == 0 {
		a.errorf(CodeEmptyFlow, "", "The flow has no components (only notes, or nothing): there is nothing to run.")
	}

	isNote := map[string]bool{}
	for _, n := range nodes {
		if n.note {
			isNote[n.id] = true
		}
	}
	var ins, outs, chatIns []string
	for _, n := range components {
		switch {
		case slices.Contains(inputTypes, n.typ):
			ins = append(ins, n.id)
			if n.typ == "ChatInput" {
				chatIns = append(chatIns, n.id)
			}
		case slices.Contains(outputTypes, n.typ):
			outs = append(outs, n.id)
		}
	}
	a.rep.Stats.Inputs, a.rep.Stats.Outputs = len(ins), len(outs)

	// Graph over components; edges touching notes are ignored like notes.
	adj := make([][]int, len(components))
	uf := newUnionFind(len(components))
	for _, e := range edges {
		si, sok := index[e.source]
		ti, tok := index[e.target]
		if !sok && !isNote[e.source] {
			a.errorf(CodeEdgeToMissingNode, e.source, "Edge #%d starts at node %q, which is not in the flow; Langflow would fail to build the graph. Remove the edge or re-export the flow.", e.index+1, e.source)
		}
		if !tok && !isNote[e.target] {
			a.errorf(CodeEdgeToMissingNode, e.target, "Edge #%d ends at node %q, which is not in the flow; Langflow would fail to build the graph. Remove the edge or re-export the flow.", e.index+1, e.target)
		}
		if sok && tok {
			adj[si] = append(adj[si], ti)
			uf.union(si, ti)
		}
	}

	if len(components) > 0 {
		switch {
		case len(ins) == 0:
			a.warnf(CodeNoInputNode, "", "The flow has no Chat Input or Text Input: a caller's message does not reach it, so every call runs on the stored values (tweaks can still change them).")
		case len(chatIns) == 0:
			a.warnf(CodeNoChatInput, "", "The flow's input is a Text Input (%s), not a Chat Input: runs must use input_type \"text\" or \"any\", and there is no chat history per session.", strings.Join(ins, ", "))
		}
		if len(ins) > 1 {
			a.warnf(CodeMultipleInputs, "", "The flow has %d input components (%s): a run's input_value goes to every input of the requested input_type, not to one you choose.", len(ins), strings.Join(ins, ", "))
		}
		if len(outs) == 0 {
			a.warnf(CodeNoOutputNode, "", "The flow has no Chat Output, Text Output or Data Output: a run returns no answer text for the caller.")
		}
		if len(outs) > 1 {
			a.warnf(CodeMultipleOutputs, "", "The flow has %d output components (%s): the answer is taken from the first output with text unless output_component names one.", len(outs), strings.Join(outs, ", "))
		}
		if n := uf.sets(); n > 1 {
			a.warnf(CodeDisconnected, "", "The flow has %d unconnected parts (for example an ingest pipeline next to the chat). A run through the API may build all of them, so a part that does not lead to the answer can still run, and cost, on every call; check that this is intended.", n)
		}
		a.rep.Stats.Subgraphs = uf.sets()
	}

	if cyc := cycleNodes(adj); len(cyc) > 0 {
		a.rep.Stats.HasCycles = true
		ids := make([]string, 0, len(cyc))
		for _, i := range cyc {
			ids = append(ids, components[i].id)
		}
		a.infof(CodeCycle, "", "The flow has loop edges (components on or after a loop: %s). Langflow 1.x runs loops (the Loop component feeds back into itself), so this is fine if intended.", truncate(strings.Join(ids, ", "), 300))
	}
}

// cycleNodes returns the nodes on or downstream of a cycle, in index
// order, or nil for a DAG. Kahn's algorithm: whatever cannot be peeled off
// in topological order lies on a cycle or behind one. It is iterative, so
// a long chain cannot exhaust the stack.
func cycleNodes(adj [][]int) []int {
	indeg := make([]int, len(adj))
	for _, outs := range adj {
		for _, t := range outs {
			indeg[t]++
		}
	}
	queue := make([]int, 0, len(adj))
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		n := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, t := range adj[n] {
			indeg[t]--
			if indeg[t] == 0 {
				queue = append(queue, t)
			}
		}
	}
	var left []int
	for i, d := range indeg {
		if d > 0 {
			left = append(left, i)
		}
	}
	return left
}

type unionFind struct{ parent []int }

func newUnionFind(n int) *unionFind {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return &unionFind{parent: p}
}

func (u *unionFind) find(x int) int {
	for u.parent[x] != x {
		u.parent[x] = u.parent[u.parent[x]]
		x = u.parent[x]
	}
	return x
}

func (u *unionFind) union(x, y int) { u.parent[u.find(x)] = u.find(y) }

func (u *unionFind) sets() int {
	n := 0
	for i := range u.parent {
		if u.find(i) == i {
			n++
		}
	}
	return n
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
