package origin_test

import (
	"testing"

	"github.com/gsvdev/agentregistry/internal/origin"
)

func TestAllowed(t *testing.T) {
	allowed := []string{"https://shop.example.com", "https://*.example.org", "http://localhost:8080/"}
	cases := map[string]bool{
		"https://shop.example.com":   true,
		"https://SHOP.example.com":   true,
		"http://shop.example.com":    false, // scheme differs
		"https://shop.example.com:1": false,
		"https://a.example.org":      true,
		"https://a.b.example.org":    true,
		"https://example.org":        false, // the wildcard is for subdomains only
		"https://evilexample.org":    false,
		"http://localhost:8080":      true,
		"null":                       false,
		"":                           false,
		"https://shop.example.com/":  false,
	}
	for o, want := range cases {
		if got := origin.Allowed(o, allowed); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", o, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := []string{"https://shop.example.com", "http://localhost:3000", "https://*.example.com", "http://127.0.0.1:8080"}
	bad := []string{"*", "https://*.com", "https://shop.*.com", "https://a.example.com/path", "javascript:alert(1)",
		"https://user@example.com", "https://example.com?x=1", "ftp://example.com", "example.com", "https://example.com/"}
	for _, o := range ok {
		if err := origin.Validate(o); err != nil {
			t.Errorf("Validate(%q) = %v", o, err)
		}
	}
	for _, o := range bad {
		if origin.Validate(o) == nil {
			t.Errorf("Validate(%q) accepted", o)
		}
	}
}
