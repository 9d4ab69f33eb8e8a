package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gsvdev/agentregistry/gateway"
)

// The page's visitor ({id, name}, the widget's user option) reaches the flow as the
// user_id / user_name tweaks; a malformed one is refused before anything runs.
func TestVisitorIsForwardedAsTweaks(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
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
