package tweaks_test

import (
	"testing"

	"github.com/gsvdev/agentregistry/internal/tweaks"
)

func TestCheck(t *testing.T) {
	allowed := []string{"temperature", "Prompt-1.template", "settings"}
	cases := []struct {
		name     string
		tw       map[string]any
		wantPath string
		wantCode bool
	}{
		{"allowed flat", map[string]any{"temperature": 0.3}, "", false},
		{"allowed nested", map[string]any{"Prompt-1": map[string]any{"template": "x"}}, "", false},
		{"flat field with an object value", map[string]any{"settings": map[string]any{"a": 1}}, "", false},
		{"not opened", map[string]any{"max_tokens": 10}, "max_tokens", false},
		{"nested field not opened", map[string]any{"Prompt-1": map[string]any{"system": "x"}}, "Prompt-1.system", false},
		{"code flat", map[string]any{"code": "import os"}, "code", true},
		{"code nested even if listed", map[string]any{"Prompt-1": map[string]any{"code": "x"}}, "Prompt-1.code", true},
		{"code deep inside an allowed object", map[string]any{"settings": map[string]any{"a": []any{map[string]any{"CODE": 1}}}}, "settings", true},
	}
	for _, c := range cases {
		v := tweaks.Check(c.tw, append(allowed, "Prompt-1.code"))
		switch {
		case c.wantPath == "" && v != nil:
			t.Errorf("%s: refused %+v", c.name, v)
		case c.wantPath != "" && (v == nil || v.Path != c.wantPath || v.Code != c.wantCode):
			t.Errorf("%s: got %+v, want path %q code %v", c.name, v, c.wantPath, c.wantCode)
		}
	}
}
