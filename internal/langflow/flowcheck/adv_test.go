package flowcheck

import (
	"strings"
	"testing"
	"time"
)

// A code field crafted to be full of key prefixes, keys and assignments
// stays fast: the scanners are linear. The bound is loose (race detector,
// busy machines); before the hand-written scanners this took over 30 s
// under -race.
func TestAdversarialCode(t *testing.T) {
	for _, tt := range []struct {
		name    string
		line    string
		secrets bool
	}{
		{"near-miss prefixes", "sk- ghp_ AKIA xox- AIza hf_ sk-aaaaaaaaaaaaaaaaaaa!\n", false},
		{"keys", "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1\n", true},
		{"assigned literals", "token = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1\"\n", true},
		{"quotes", strings.Repeat("\"", 40) + "\n", false},
		{"prefix chain", strings.Repeat("sk-", 30) + "\n", true}, // one key per line: "-" is in the alphabet
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := 6 << 20 / len(tt.line)
			m := component("Model-1", "LanguageModelComponent", obj{"code": codeField(strings.Repeat(tt.line, n))})
			raw := encode(t, basic(m))
			start := time.Now()
			out, rep, err := StripWith(raw, Options{MaxBytes: 16 << 20})
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("Strip took %v", d)
			}
			if err != nil || !rep.Valid {
				t.Fatalf("err=%v errors=%+v", err, rep.Errors)
			}
			if want := map[bool]int{true: n, false: 0}[tt.secrets]; len(rep.Secrets) != want {
				t.Errorf("%d secrets, want %d", len(rep.Secrets), want)
			}
			if tt.secrets && strings.Contains(string(out), "aaaaaaaaaaaaaaaaaaaa") {
				t.Error("a key survived Strip")
			}
		})
	}
}
