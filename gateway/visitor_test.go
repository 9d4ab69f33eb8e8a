package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gsvdev/agentregistry/gateway"
)

// The page's visitor ({id, name}, the widget's user option) reaches the flow as the
// user_id / user_name tweaks when the plan opens them, and not otherwise; a malformed one
// is refused before anything runs.
func TestVisitorIsForwardedAsTweaks(t *testing.T) {
	e := newEnv(t, envOptions{})
	closed := e.seed(fixtureOptions{})
	if r := e.invoke(e.secret(closed), `{"input":"hi","user":{"id":"victim"}}`); r.status != http.StatusOK {
		t.Fatalf("invoke with a visitor the plan does not open: %d %s", r.status, r.body)
	}
	var before struct {
		Tweaks map[string]any `json:"tweaks"`
	}
	_ = json.Unmarshal(e.rt.LastRunBody(), &before)
	if _, set := before.Tweaks[gateway.VisitorIDTweak]; set {
		t.Fatalf("user_id reached the flow although the plan does not open it: %v", before.Tweaks)
	}
	f := e.seed(fixtureOptions{tweakable: []string{gateway.VisitorIDTweak, gateway.VisitorNameTweak}})
	key := e.secret(f)
	r := e.invoke(key, `{"input":"hi","user":{"id":"u-42@shop","name":"Ann Example"}}`)
	if r.status != http.StatusOK {
		t.Fatalf("invoke with a visitor: %d %s", r.status, r.body)
	}
	var sent struct {
		Tweaks map[string]any `json:"tweaks"`
	}
	if err := json.Unmarshal(e.rt.LastRunBody(), &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Tweaks[gateway.VisitorIDTweak] != "u-42@shop" || sent.Tweaks[gateway.VisitorNameTweak] != "Ann Example" {
		t.Fatalf("tweaks sent to Langflow: %v", sent.Tweaks)
	}
	calls := e.rt.Calls()
	for _, bad := range []string{
		`{"input":"hi","user":{"id":"has space"}}`,
		`{"input":"hi","user":{"name":"line\nbreak"}}`,
		`{"input":"hi","user":"Ann"}`,
	} {
		if r := e.invoke(key, bad); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	if e.rt.Calls() != calls {
		t.Fatal("a refused visitor reached Langflow")
	}
}
