package graph_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// A @skip/@include condition that is null once the variables are known is the client's
// mistake: BAD_USER_INPUT, not a 500 from a panic inside gqlgen. Validation lets it
// through because a nullable variable with a default may stand where Boolean! is expected.
func TestNullSkipIncludeConditionIsBadInput(t *testing.T) {
	h := newHarness(t, dbtest.Drivers(t)[0])
	tok := h.token("conditions", auth.RoleCustomer)
	cases := []struct {
		name, query string
		vars        map[string]any
	}{
		{"include on a field", `query($v: Boolean = true) { viewer @include(if: $v) { subject } }`, nil},
		{"skip on a nested field", `query($v: Boolean = false) { viewer { subject @skip(if: $v) } }`, nil},
		{"on an inline fragment", `query($v: Boolean = true) { viewer { ... @include(if: $v) { subject } } }`, nil},
		{"inside a named fragment", `query($v: Boolean = true) { viewer { ...F } } fragment F on Viewer { subject @include(if: $v) }`, nil},
		{"on a fragment spread", `query($v: Boolean = true) { viewer { ...F @skip(if: $v) } } fragment F on Viewer { subject }`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// With the default, or a boolean, the query answers.
			for _, vars := range []map[string]any{nil, {"v": true}, {"v": false}} {
				if r := h.post(tok, tc.query, vars); len(r.Errors) > 0 {
					t.Fatalf("with %v: %s", vars, r.Raw)
				}
			}
			r := h.post(tok, tc.query, map[string]any{"v": nil})
			if r.Status >= 500 || len(r.Errors) != 1 || r.Errors[0].code() != "BAD_USER_INPUT" || r.hasData() {
				t.Fatalf("null condition: status %d: %s", r.Status, r.Raw)
			}
			if !strings.Contains(r.Errors[0].Message, "must be true or false") {
				t.Fatalf("message %q does not say what is wrong", r.Errors[0].Message)
			}
		})
	}
}

// Only the operation being run is checked: a fragment that only another operation of the
// document uses may name a variable this one does not have.
func TestNullConditionOfAnotherOperationIsIgnored(t *testing.T) {
	h := newHarness(t, dbtest.Drivers(t)[0])
	doc := `query A($v: Boolean = true) { viewer @include(if: $v) { subject } }
		query B($w: Boolean = true) { viewer { ...F } }
		fragment F on Viewer { subject @include(if: $w) }`
	body, err := json.Marshal(map[string]any{"query": doc, "operationName": "A", "variables": map[string]any{"v": true}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, h.srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.token("conditions", auth.RoleCustomer))
	if r := h.send(req); len(r.Errors) > 0 || !r.hasData() {
		t.Fatalf("operation A: %s", r.Raw)
	}
}

// Over a websocket the subscription is refused with BAD_USER_INPUT, and the connection
// carries on.
func TestNullConditionOnSubscriptionIsRefused(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) { o.LiveUsage = fakeLive{} })
	c := wsDial(t, h)
	wsInit(t, c, h.token("ws-conditions", auth.RolePlatformAdmin))
	query := `subscription($v: Boolean = true) { usageStats(filter: {}) { asOf recent @include(if: $v) { requestID } } }`
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "null", "payload": map[string]any{
		"query": query, "variables": map[string]any{"v": nil}}})
	// gqlgen answers an operation it cannot start as it does a validation error: one
	// message with the errors and no data, then complete.
	m := wsNextFor(t, c, "null", "error", "next")
	payload, _ := m["payload"].(map[string]any)
	if !strings.Contains(fmt.Sprint(payload["errors"]), "BAD_USER_INPUT") || payload["data"] != nil {
		t.Fatalf("subscription with a null condition: %v", m)
	}
	wsNextFor(t, c, "null", "complete")
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "ok", "payload": map[string]any{
		"query": query, "variables": map[string]any{"v": false}}})
	if m := wsNextFor(t, c, "ok", "error", "next"); m["type"] != "next" {
		t.Fatalf("the next subscription on the connection: %v", m)
	}
}
