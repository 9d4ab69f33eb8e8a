package flowcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// redacted replaces a key found inside code. It is not a valid key in any
// format we look for, so a stripped export checks clean.
const redacted = "<redacted>"

// keyRule describes one credential format by its published prefix: after
// the prefix come at least min (and at most max, when max > 0) bytes of
// the class; boundary requires a non-word byte after the key.
type keyRule struct {
	prefix   string
	class    func(byte) bool
	min, max int
	boundary bool
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
func isAlnumDash(c byte) bool  { return isAlnum(c) || c == '-' }
func isAlnumUnder(c byte) bool { return isAlnum(c) || c == '_' }
func isTokenByte(c byte) bool  { return isAlnum(c) || c == '_' || c == '-' }
func isUpperDigit(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

// keyRules: OpenAI and Anthropic (sk-, sk-proj-, sk-ant-… all continue in
// the same alphabet), Stripe, AWS access key ids, GitHub, Slack, Google API
// keys, Hugging Face. They are matched by hand (findKeys) rather than by a
// regexp: Go's regexp engine managed about 2 MB/s on a code field crafted
// to be full of near-misses, and a linear scan per prefix does hundreds.
var keyRules = func() []keyRule {
	rules := []keyRule{
		{prefix: "sk-", class: isTokenByte, min: 20},
		{prefix: "github_pat_", class: isAlnumUnder, min: 30},
		{prefix: "AIza", class: isTokenByte, min: 35, max: 35},
	}
	for _, p := range []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"} {
		rules = append(rules, keyRule{prefix: p, class: isAlnum, min: 16})
	}
	for _, p := range []string{"AKIA", "ASIA"} {
		rules = append(rules, keyRule{prefix: p, class: isUpperDigit, min: 16, max: 16, boundary: true})
	}
	for _, p := range []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "hf_"} {
		rules = append(rules, keyRule{prefix: p, class: isAlnum, min: 30})
	}
	for _, c := range "abposr" {
		rules = append(rules, keyRule{prefix: "xox" + string(c) + "-", class: isAlnumDash, min: 10})
	}
	return rules
}()

// findKeys returns the [start, end) spans of credentials in s, in no
// particular order and possibly overlapping across rules. Matches of one
// rule do not overlap, and the search resumes after each match, so the
// work is linear in len(s) per rule.
func findKeys(s string) [][2]int {
	var out [][2]int
	for _, r := range keyRules {
		for from := 0; from < len(s); {
			i := strings.Index(s[from:], r.prefix)
			if i < 0 {
				break
			}
			start := from + i
			from = start + 1
			if start > 0 && isIdentByte(s[start-1]) {
				continue // not at a word boundary: part of a longer name
			}
			j := start + len(r.prefix)
			limit := len(s)
			if r.max > 0 {
				limit = min(limit, j+r.max)
			}
			k := j
			for k < limit && r.class(s[k]) {
				k++
			}
			if k-j < r.min {
				continue
			}
			if r.boundary && k < len(s) && isIdentByte(s[k]) {
				continue
			}
			out = append(out, [2]int{start, k})
			from = k
		}
	}
	return out
}

// credentialWords mark a variable or key name whose quoted literal is a
// credential: api_key = "…", "token": '…', password="…".
var credentialWords = []string{"api_key", "apikey", "secret", "token", "passw", "access_key", "accesskey", "auth"}

// knownPrefixes are shown in previews: they tell the provider which key it
// was without revealing any of its secret part.
var knownPrefixes = []string{"sk-proj-", "sk-ant-", "sk-", "sk_live_", "sk_test_", "rk_live_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "AIza", "hf_", "Bearer "}

// preview describes a secret without its value: a known public prefix (if
// any) and the length.
func preview(v string) string {
	n := utf8.RuneCountInString(v)
	for _, p := range knownPrefixes {
		if strings.HasPrefix(v, p) && len(v) > len(p) {
			return fmt.Sprintf("%s…(%d chars)", p, n)
		}
	}
	return fmt.Sprintf("…(%d chars)", n)
}

func looksLikeKey(s string) bool {
	letters, digits := false, false
	for _, r := range s {
		switch {
		case unicode.IsDigit(r):
			digits = true
		case unicode.IsLetter(r):
			letters = true
		}
	}
	return letters && digits
}

func isKnownKey(s string) bool {
	return slices.Contains(findKeys(s), [2]int{0, len(s)})
}

func (a *analyzer) secret(nodeID, field, kind, value string) {
	a.rep.Secrets = append(a.rep.Secrets, Secret{NodeID: nodeID, Field: field, Kind: kind, Preview: preview(value)})
}

// scanComponent looks at one component's template for secrets, global
// variables and custom code, and recurses into group nodes, whose inner
// flow carries templates of its own.
func (a *analyzer) scanComponent(nodeID, typ string, body map[string]any, depth int) {
	template, _ := body["template"].(map[string]any)
	if template != nil {
		a.checkCustomCode(nodeID, typ, body, template)
		mcp := isMCP(typ, body, template)
		keys := make([]string, 0, len(template))
		for k := range template {
			keys = append(keys, k)
		}
		// Map order is random; reports and tests need a stable order.
		sort.Strings(keys)
		for _, k := range keys {
			field, _ := template[k].(map[string]any)
			if field == nil {
				continue
			}
			a.scanField(nodeID, k, field, mcp)
		}
	}
	// Group nodes: data.node.flow.data.nodes[].data.node.
	flow, _ := body["flow"].(map[string]any)
	data, _ := flow["data"].(map[string]any)
	inner, _ := data["nodes"].([]any)
	if len(inner) == 0 {
		return
	}
	if depth >= maxGroupDepth {
		// Refused rather than skipped: unscanned nodes could keep secrets.
		a.errorf(CodeTooDeep, nodeID, "Groups are nested more than %d levels deep inside %q.", maxGroupDepth, nodeID)
		a.unscanned = true
		return
	}
	a.nodesSeen += len(inner)
	if a.nodesSeen > a.opts.MaxNodes {
		return
	}
	for _, rn := range inner {
		m, _ := rn.(map[string]any)
		d, _ := m["data"].(map[string]any)
		b, _ := d["node"].(map[string]any)
		if b == nil {
			continue
		}
		id, _ := m["id"].(string)
		t, _ := d["type"].(string)
		a.scanComponent(nodeID+"/"+id, t, b, depth+1)
	}
}

// checkCustomCode warns about components whose Python is not known to be a
// stock component's. Every 1.x component carries its code in the export and
// the runtime executes that code, so "has code" says nothing; comparing
// with the stock source would need every Langflow version's sources, and
// metadata.code_hash is no help either (the starter projects' own
// LanguageModelComponent does not match its hash). The rule is:
//   - data.node.edited is true: Langflow sets it when code is changed in
//     the editor;
//   - the type is "CustomComponent": Langflow's blank custom component;
//   - metadata.module names a module outside Langflow's component packages:
//     a component loaded from the provider's own components path.
//
// A node edited by hand in the JSON with edited left false and stock
// metadata is not caught; the warning is a review aid, not a sandbox.
func (a *analyzer) checkCustomCode(nodeID, typ string, body, template map[string]any) {
	code, _ := template["code"].(map[string]any)
	if code == nil {
		return
	}
	if src, _ := code["value"].(string); strings.TrimSpace(src) == "" {
		return
	}
	var why string
	module := ""
	if md, _ := body["metadata"].(map[string]any); md != nil {
		module, _ = md["module"].(string)
	}
	switch {
	case body["edited"] == true:
		why = "its code was edited in Langflow"
	case typ == "CustomComponent":
		why = "it is a Custom Component"
	case module != "" && !slices.ContainsFunc(stockModulePrefixes, func(p string) bool { return strings.HasPrefix(module, p) }):
		why = fmt.Sprintf("it comes from %s, not from Langflow's components", module)
	default:
		return
	}
	a.warnf(CodeCustomCode, nodeID, "Component %q (%s) runs custom Python on the runtime: %s. Review its code before publishing.", nodeID, typ, why)
}

// scanField applies the secret and global-variable rules to one template
// field.
func (a *analyzer) scanField(nodeID, key string, field map[string]any, mcp bool) {
	value, isString := field["value"].(string)
	fromDB := field["load_from_db"] == true
	password := field["password"] == true

	blanked := false
	switch {
	case fromDB && isString && value != "":
		// The value names a Langflow global variable, unless someone pasted
		// a real key into it: Langflow would look up a variable with that
		// name and fail, and the key would still be in the file.
		if password && isKnownKey(strings.TrimSpace(value)) {
			a.secret(nodeID, key, KindPasswordField, value)
			field["value"], blanked = "", true
		} else {
			a.globals[value] = struct{}{}
		}
	case password && isString && value != "":
		a.secret(nodeID, key, KindPasswordField, value)
		field["value"], blanked = "", true
	}

	// A blanked field is done: scanning its old value again would write
	// part of the secret back.
	if !blanked && isString && value != "" && (key == "code" || field["type"] == "code") {
		if out, changed := a.scanCode(nodeID, key, value); changed {
			field["value"] = out
		}
	}

	if mcp && !blanked {
		if kind := mcpKind(key); kind != "" {
			if v, ok := field["value"]; ok {
				if out, changed := a.scanMCP(nodeID, key, kind, v, 0); changed {
					field["value"] = out
				}
			}
		}
	}
}

// scanCode finds credentials in Python source and returns the source with
// each replaced by redacted.
func (a *analyzer) scanCode(nodeID, key, src string) (string, bool) {
	type span struct{ start, end int }
	var spans []span
	for _, loc := range findKeys(src) {
		spans = append(spans, span{loc[0], loc[1]})
	}
	for _, lit := range assignedLiterals(src) {
		spans = append(spans, span{lit[0], lit[1]})
	}
	if len(spans) == 0 {
		return src, false
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	// Merge overlaps (a sk- key assigned to api_key matches twice) so each
	// key is reported and replaced once.
	merged := spans[:1]
	for _, s := range spans[1:] {
		last := &merged[len(merged)-1]
		if s.start < last.end {
			last.end = max(last.end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	var b strings.Builder
	prev := 0
	for _, s := range merged {
		a.secret(nodeID, key, KindAPIKeyInCode, src[s.start:s.end])
		b.WriteString(src[prev:s.start])
		b.WriteString(redacted)
		prev = s.end
	}
	b.WriteString(src[prev:])
	return b.String(), true
}

// isMCP tells MCP client components (MCPTools, the older MCP Connection,
// MCPSse, MCPStdio) apart from the rest: their header and env fields are
// credentials for the MCP server, and Langflow has no password flag on them.
func isMCP(typ string, body, template map[string]any) bool {
	if strings.Contains(strings.ToLower(typ), "mcp") {
		return true
	}
	if dn, _ := body["display_name"].(string); strings.Contains(strings.ToLower(dn), "mcp") {
		return true
	}
	_, ok := template["mcp_server"]
	return ok
}

func mcpKind(key string) string {
	k := strings.ToLower(key)
	switch {
	case k == "mcp_server":
		return "server"
	case strings.Contains(k, "header"):
		return KindMCPHeader
	case k == "env" || strings.HasPrefix(k, "env_") || strings.HasSuffix(k, "_env"):
		return KindMCPEnv
	}
	return ""
}

// scanMCP reports every non-empty header or env value in v and returns v
// with those values blanked. Langflow has stored them as an object, a list
// of {key, value} rows, a list of "KEY=VALUE" strings, and a JSON string of
// any of these; mcp_server holds {name, config: {env, headers, ...}}.
// Names are kept so the provider sees which values to set again.
func (a *analyzer) scanMCP(nodeID, path, kind string, v any, depth int) (any, bool) {
	if depth > 8 {
		return v, false
	}
	if kind == "server" {
		m, _ := v.(map[string]any)
		if m == nil {
			return v, false
		}
		changed := false
		holders := []struct {
			m      map[string]any
			prefix string
		}{{m, path}, {asMap(m["config"]), path + ".config"}}
		for _, h := range holders {
			if h.m == nil {
				continue
			}
			for _, sub := range []string{"env", "headers"} {
				if h.m[sub] == nil {
					continue
				}
				k := KindMCPEnv
				if sub == "headers" {
					k = KindMCPHeader
				}
				if out, c := a.scanMCP(nodeID, h.prefix+"."+sub, k, h.m[sub], depth+1); c {
					h.m[sub] = out
					changed = true
				}
			}
		}
		return v, changed
	}
	switch x := v.(type) {
	case string:
		return a.scanMCPString(nodeID, path, kind, x, depth)
	case []any:
		changed := false
		for i, el := range x {
			switch e := el.(type) {
			case map[string]any:
				if _, hasKey := e["key"]; hasKey {
					name, _ := e["key"].(string)
					if s, ok := e["value"].(string); ok && s != "" {
						a.secret(nodeID, path+"."+name, kind, s)
						e["value"] = ""
						changed = true
					}
					continue
				}
				if _, c := a.scanMCP(nodeID, path, kind, e, depth+1); c {
					changed = true
				}
			case string:
				if out, c := a.scanMCPString(nodeID, path, kind, e, depth); c {
					x[i] = out
					changed = true
				}
			}
		}
		return x, changed
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		changed := false
		for _, k := range keys {
			switch e := x[k].(type) {
			case string:
				if e != "" {
					a.secret(nodeID, path+"."+k, kind, e)
					x[k] = ""
					changed = true
				}
			case map[string]any, []any:
				if out, c := a.scanMCP(nodeID, path+"."+k, kind, e, depth+1); c {
					x[k] = out
					changed = true
				}
			}
		}
		return x, changed
	}
	return v, false
}

// scanMCPString handles one string: JSON text, "KEY=VALUE", "Name: value",
// or a bare value.
func (a *analyzer) scanMCPString(nodeID, path, kind, s string, depth int) (any, bool) {
	t := strings.TrimSpace(s)
	if t == "" {
		return s, false
	}
	if strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		dec := json.NewDecoder(strings.NewReader(t))
		dec.UseNumber()
		var inner any
		if dec.Decode(&inner) == nil {
			out, changed := a.scanMCP(nodeID, path, kind, inner, depth+1)
			if !changed {
				return s, false
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if enc.Encode(out) == nil {
				return strings.TrimSuffix(buf.String(), "\n"), true
			}
			return "", true
		}
	}
	sep := "="
	if kind == KindMCPHeader {
		sep = ":"
	}
	if name, val, ok := strings.Cut(t, sep); ok && !strings.ContainsAny(name, " \t") && name != "" {
		val = strings.TrimSpace(val)
		if val == "" {
			return s, false
		}
		a.secret(nodeID, path+"."+name, kind, val)
		return name + sep, true
	}
	a.secret(nodeID, path, kind, t)
	return "", true
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// minAssignedLen is the shortest literal taken for a key when it is
// assigned to a credential-named variable: shorter strings are names,
// placeholders and test values far more often than keys.
const minAssignedLen = 20

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '+' || c == '/' || c == '_' || c == '-' || c == '.' || c == '='
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// assignedLiterals returns the [start, end) spans of quoted literals of at
// least minAssignedLen key characters, with letters and digits, assigned to
// a credential-named variable or dict key (api_key = "…", "token": '…',
// password=r"…"). It is a hand-written single pass rather than a regexp:
// Go runs submatching regexps on its slow engine, and an 8 MB code field
// made of such lines took tens of seconds.
func assignedLiterals(src string) [][2]int {
	var out [][2]int
	for i := 0; i < len(src); i++ {
		q := src[i]
		if q != '"' && q != '\'' {
			continue
		}
		j := i + 1
		for j < len(src) && isKeyByte(src[j]) {
			j++
		}
		if j >= len(src) || src[j] != q || j-(i+1) < minAssignedLen {
			// Resume at j: the bytes between were key bytes, none a quote.
			i = j - 1
			continue
		}
		if lit := src[i+1 : j]; looksLikeKey(lit) && credentialBefore(src, i) {
			out = append(out, [2]int{i + 1, j})
		}
		i = j // the closing quote does not open another literal
	}
	return out
}

// credentialBefore reports whether the literal opening at src[q] is
// assigned to a credential-named identifier: [ident]["']? *[:=] *[rbu]?<q>.
func credentialBefore(src string, q int) bool {
	k := q - 1
	if k >= 0 && strings.IndexByte("rbuRBU", src[k]) >= 0 {
		k--
	}
	for k >= 0 && (src[k] == ' ' || src[k] == '\t') {
		k--
	}
	if k < 0 || (src[k] != '=' && src[k] != ':') {
		return false
	}
	k--
	for k >= 0 && (src[k] == ' ' || src[k] == '\t') {
		k--
	}
	if k >= 0 && (src[k] == '"' || src[k] == '\'') {
		k--
	}
	end := k + 1
	// Identifiers longer than 64 bytes are not looked at in full; this
	// keeps the backward scan bounded.
	for k >= 0 && end-k <= 64 && isIdentByte(src[k]) {
		k--
	}
	name := strings.ToLower(src[k+1 : end])
	return name != "" && slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(name, w) })
}
