package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/seed"
)

// The portal's dashboard opens its usageStats websocket from a browser: the service must
// accept that from the portal's origins (CORS_ALLOWED_ORIGINS) and from its own, and
// refuse a page of any other site at the handshake, before it reads a token. (The
// tokens travel in connection_init, not in cookies, so the check keeps other sites from
// using a token they got hold of rather than a session the browser holds.) Clients that
// are not browsers send no Origin and are not concerned.
func TestGraphQLWebsocketOrigins(t *testing.T) {
	ctx := context.Background()
	env, issuer := prodEnv(t)
	env["CORS_ALLOWED_ORIGINS"] = "https://portal.example.com,https://*.example.org"
	a := startReplica(t, env)
	demo, err := seed.Demo(ctx, a.DB().Client)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	tok := issuer.Token(t, authtest.NewClaims().Subject(seed.CustomerSubject).RealmRoles(string(auth.RoleCustomer)).Map())
	query := fmt.Sprintf(`subscription { usageStats(filter: {tenantID: %q}) { %s } }`, demo.BuyerTenant, statsSelection)

	for _, origin := range []string{
		"https://portal.example.com",
		"https://eu.example.org", // the wildcard
		base,                     // the service's own pages (the playground)
		"",                       // not a browser
	} {
		t.Run("accepted "+origin, func(t *testing.T) {
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			sub := subscribeQuery(t, base, tok, query, h)
			sub.next(t, 5*time.Second, func(statsMsg) bool { return true })
		})
	}

	for _, origin := range []string{
		"https://evil.example.net",
		"http://portal.example.com", // an allowed host over another scheme is another origin
		"https://portal.example.com.evil.net",
		"https://example.org", // the wildcard needs a subdomain, as for CORS
		"https://portal.example.com:8443",
		"null", // sandboxed frames, file: pages
	} {
		t.Run("refused "+origin, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", &websocket.DialOptions{
				Subprotocols: []string{"graphql-transport-ws"},
				HTTPHeader:   http.Header{"Origin": {origin}},
			})
			if err == nil {
				c.CloseNow()
				t.Fatalf("a websocket from %s was accepted", origin)
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("a websocket from %s: %v (response %v), want 403", origin, err, resp)
			}
		})
	}
}

// In dev mode the playground is where a developer tries the API, subscriptions included
// (the issue: "in the playground, a subscription can be tried with the dev token"). The
// page must open with the demo customer's token in its headers editor, which GraphiQL
// sends as HTTP headers and, for subscriptions, as connection_init's payload, and send
// subscriptions over a websocket to this service's /graphql. A usageStats subscription
// made that way gets its first message, with the call made just before.
func TestDevPlaygroundSubscribesWithDevToken(t *testing.T) {
	base, creds, _, _ := startDev(t)

	resp, err := http.Get(base + "/playground")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /playground: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The page builds its URLs from where it was loaded (gqlgen's GraphiQL template):
	// queries to /graphql, subscriptions to ws(s)://<the same host>/graphql.
	for _, want := range []string{
		`const subscriptionUrl = wsProto + '//' + location.host + "/graphql";`,
		`GraphiQL.createFetcher({ url, subscriptionUrl,`,
	} {
		if !strings.Contains(string(page), want) {
			t.Fatalf("the playground page lacks %q", want)
		}
	}
	m := regexp.MustCompile(`const uiHeaders = (\{.*\});`).FindSubmatch(page)
	if m == nil {
		t.Fatal("the playground opens with no headers")
	}
	var headers map[string]string
	if err := json.Unmarshal(m[1], &headers); err != nil {
		t.Fatalf("the playground's headers %s: %v", m[1], err)
	}
	tok, ok := strings.CutPrefix(headers["Authorization"], "Bearer ")
	if !ok || tok == "" {
		t.Fatalf("the playground's headers: %v", headers)
	}

	// It is the demo customer's token.
	var v struct {
		Viewer struct {
			Subject     string
			Memberships []struct{ Tenant struct{ ID, Slug string } }
		}
	}
	gqlOK(t, base, tok, `{ viewer { subject memberships { tenant { id slug } } } }`, nil, &v)
	if v.Viewer.Subject != seed.CustomerSubject || len(v.Viewer.Memberships) != 1 || v.Viewer.Memberships[0].Tenant.Slug != seed.BuyerSlug {
		t.Fatalf("the playground's token is not the demo customer's: %+v", v.Viewer)
	}

	// A call with the dev API key, then the subscription, from the playground's origin.
	if got := invokeStatus(t, base, creds["api key"]); got != http.StatusOK {
		t.Fatalf("invoke with the dev api key: %d", got)
	}
	sub := subscribeQuery(t, base, tok,
		fmt.Sprintf(`subscription { usageStats(filter: {tenantID: %q}) { %s } }`, v.Viewer.Memberships[0].Tenant.ID, statsSelection),
		http.Header{"Origin": {base}})
	first := sub.next(t, 5*time.Second, func(statsMsg) bool { return true })
	if first.Day.Requests != 1 || len(first.Recent) != 1 || first.Recent[0].RequestID == "" {
		t.Fatalf("the first message after one call: %+v", first)
	}
}
