package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// wsDial opens a graphql-transport-ws connection to the harness.
func wsDial(t *testing.T, h *harness) *websocket.Conn {
	t.Helper()
	return wsDialProtocol(t, h, "graphql-transport-ws")
}

// wsDialProtocol opens a websocket to the harness that speaks the given subprotocol.
func wsDialProtocol(t *testing.T, h *harness, subprotocol string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if c.Subprotocol() != subprotocol {
		t.Fatalf("negotiated %q, want %q", c.Subprotocol(), subprotocol)
	}
	return c
}

func wsSend(t *testing.T, c *websocket.Conn, msg any) {
	t.Helper()
	b, _ := json.Marshal(msg)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// wsCloseCode reads until the server closes and returns its close code.
func wsCloseCode(t *testing.T, c *websocket.Conn, within time.Duration) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		t.Fatalf("connection ended without a close frame: %v", err)
	}
}

// wsInit sends connection_init and waits for the ack.
func wsInit(t *testing.T, c *websocket.Conn, token string) {
	t.Helper()
	wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for ack: %v", err)
		}
		if strings.Contains(string(b), `"connection_ack"`) {
			return
		}
	}
}

// Each close code of the graphql-transport-ws protocol is produced by the situation it
// names (4409 and the per-connection subscription cap are covered with usageStats).
func TestWebsocketCloseCodes(t *testing.T) {
	short := func(o *graph.Options) {
		o.WSInitTimeout = 300 * time.Millisecond
		o.MaxConnectionsPerUser = 2
	}
	h := newHarness(t, database.DriverSQLite, short)
	good := h.token("ws-user", auth.RoleCustomer)

	cases := []struct {
		name string
		run  func(t *testing.T) websocket.StatusCode
		want websocket.StatusCode
	}{
		{"4403 bad token in connection_init", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer garbage"}})
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseForbidden},
		{"4403 no token at all", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsSend(t, c, map[string]any{"type": "connection_init"})
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseForbidden},
		{"4408 no connection_init in time", func(t *testing.T) websocket.StatusCode {
			return wsCloseCode(t, wsDial(t, h), 5*time.Second)
		}, graph.CloseInitTimeout},
		{"4429 a second connection_init", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsInit(t, c, good)
			wsSend(t, c, map[string]any{"type": "connection_init"})
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseTooManyInits},
		{"4401 subscribe before the ack", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsSend(t, c, map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{"query": "{ viewer { subject } }"}})
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseUnauthorized},
		{"4400 not JSON", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsInit(t, c, good)
			if err := c.Write(context.Background(), websocket.MessageText, []byte("{nope")); err != nil {
				t.Fatal(err)
			}
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseBadRequest},
		{"4400 unknown message type", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			wsInit(t, c, good)
			wsSend(t, c, map[string]any{"type": "start", "id": "1"})
			return wsCloseCode(t, c, 5*time.Second)
		}, graph.CloseBadRequest},
		{"4403 when the token expires", func(t *testing.T) websocket.StatusCode {
			c := wsDial(t, h)
			claims := authtest.NewClaims().Subject("short-lived").RealmRoles(string(auth.RoleCustomer)).
				Set("exp", time.Now().Add(1500*time.Millisecond).Unix())
			wsInit(t, c, h.issuer.Token(t, claims.Map()))
			start := time.Now()
			code := wsCloseCode(t, c, 5*time.Second)
			if time.Since(start) < 200*time.Millisecond {
				t.Errorf("closed after %v, before the token expired", time.Since(start))
			}
			return code
		}, graph.CloseForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.run(t); got != c.want {
				t.Fatalf("close code %d, want %d", got, c.want)
			}
		})
	}
}

// One person may hold a bounded number of connections; closing one frees its place.
func TestWebsocketConnectionsPerUser(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) { o.MaxConnectionsPerUser = 2 })
	tok := h.token("busy-user", auth.RoleCustomer)
	a, b := wsDial(t, h), wsDial(t, h)
	wsInit(t, a, tok)
	wsInit(t, b, tok)
	third := wsDial(t, h)
	wsSend(t, third, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + tok}})
	if got := wsCloseCode(t, third, 5*time.Second); got != graph.CloseTooManyInits {
		t.Fatalf("third connection closed with %d, want %d", got, graph.CloseTooManyInits)
	}
	// Someone else is not affected.
	wsInit(t, wsDial(t, h), h.token("other-user", auth.RoleCustomer))
	// Closing one frees a place.
	a.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := wsDial(t, h)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + tok}})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, msg, err := c.Read(ctx)
		cancel()
		if err == nil && strings.Contains(string(msg), "connection_ack") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place freed after closing a connection: %v %s", err, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeLive holds each subscription open until its context ends, after one message.
type fakeLive struct{}

func (fakeLive) Subscribe(ctx context.Context, _ live.Filter) (<-chan *live.Stats, error) {
	ch := make(chan *live.Stats, 1)
	ch <- &live.Stats{AsOf: time.Now()}
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

func wsSubscribe(t *testing.T, c *websocket.Conn, id string) {
	t.Helper()
	wsSend(t, c, map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{
		"query": `subscription { usageStats(filter: {}) { asOf } }`}})
}

// wsNextFor reads until a message of one of the types arrives for id.
func wsNextFor(t *testing.T, c *websocket.Conn, id string, types ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %v of %s: %v", types, id, err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for _, ty := range types {
			if m["type"] == ty && m["id"] == id {
				return m
			}
		}
	}
}

// A second subscribe with an id that is still running closes with 4409; over the
// per-connection cap an operation is refused but the connection stays.
func TestWebsocketSubscriptionIDsAndCap(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.LiveUsage = fakeLive{}
		o.MaxSubscriptionsPerConn = 2
	})
	admin := h.token("ws-admin", auth.RolePlatformAdmin)

	t.Run("4409 duplicate id", func(t *testing.T) {
		c := wsDial(t, h)
		wsInit(t, c, admin)
		wsSubscribe(t, c, "a")
		wsNextFor(t, c, "a", "next")
		wsSubscribe(t, c, "a")
		if got := wsCloseCode(t, c, 5*time.Second); got != graph.CloseSubscriberExists {
			t.Fatalf("close code %d, want %d", got, graph.CloseSubscriberExists)
		}
	})
	t.Run("cap per connection", func(t *testing.T) {
		c := wsDial(t, h)
		wsInit(t, c, admin)
		wsSubscribe(t, c, "a")
		wsNextFor(t, c, "a", "next")
		wsSubscribe(t, c, "b")
		wsNextFor(t, c, "b", "next")
		wsSubscribe(t, c, "c")
		m := wsNextFor(t, c, "c", "error", "next")
		if m["type"] != "error" || !strings.Contains(fmt.Sprint(m["payload"]), "RATE_LIMITED") {
			t.Fatalf("third subscription: %v", m)
		}
		// Completing one frees a place on the same connection.
		wsSend(t, c, map[string]any{"type": "complete", "id": "a"})
		deadline := time.Now().Add(3 * time.Second)
		for {
			wsSubscribe(t, c, "d")
			if m := wsNextFor(t, c, "d", "error", "next"); m["type"] == "next" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no place freed after completing a subscription")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// The legacy graphql-ws protocol (subscriptions-transport-ws) still works for older
// clients: init with the token in the payload, start an operation, receive its data.
func TestLegacyGraphQLWSProtocol(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) { o.LiveUsage = fakeLive{} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/",
		&websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "graphql-ws" {
		t.Fatalf("negotiated %q", c.Subprotocol())
	}
	wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + h.token("legacy", auth.RolePlatformAdmin)}})
	wsSend(t, c, map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": `subscription { usageStats(filter: {}) { asOf } }`}})
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no data on the legacy protocol: %v", err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if m["type"] == "data" && strings.Contains(string(b), "asOf") {
			return
		}
		if m["type"] == "error" || m["type"] == "connection_error" {
			t.Fatalf("legacy protocol: %s", b)
		}
	}
}

// The legacy protocol gets the same limits as graphql-transport-ws: a socket that never
// sends connection_init is closed, the per-connection cap refuses a further operation
// (and stop frees a place), and a second operation under a running id closes the
// connection instead of leaving the first to run unseen until the connection ends.
func TestLegacyGraphQLWSLimits(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.LiveUsage = fakeLive{}
		o.MaxSubscriptionsPerConn = 2
		o.WSInitTimeout = 300 * time.Millisecond
	})
	admin := h.token("legacy-admin", auth.RolePlatformAdmin)
	start := func(t *testing.T, c *websocket.Conn, id string) {
		t.Helper()
		wsSend(t, c, map[string]any{"type": "start", "id": id, "payload": map[string]any{
			"query": `subscription { usageStats(filter: {}) { asOf } }`}})
	}

	t.Run("init timeout", func(t *testing.T) {
		c := wsDialProtocol(t, h, "graphql-ws")
		if got := wsCloseCode(t, c, 5*time.Second); got != graph.CloseInitTimeout {
			t.Fatalf("close code %d, want %d", got, graph.CloseInitTimeout)
		}
	})
	t.Run("cap per connection", func(t *testing.T) {
		c := wsDialProtocol(t, h, "graphql-ws")
		wsInit(t, c, admin)
		start(t, c, "a")
		wsNextFor(t, c, "a", "data")
		start(t, c, "b")
		wsNextFor(t, c, "b", "data")
		start(t, c, "c")
		m := wsNextFor(t, c, "c", "error", "data")
		if m["type"] != "error" || !strings.Contains(fmt.Sprint(m["payload"]), "RATE_LIMITED") {
			t.Fatalf("third operation: %v", m)
		}
		wsSend(t, c, map[string]any{"type": "stop", "id": "a"})
		deadline := time.Now().Add(3 * time.Second)
		for {
			start(t, c, "d")
			if m := wsNextFor(t, c, "d", "error", "data"); m["type"] == "data" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no place freed after stopping an operation")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("duplicate id", func(t *testing.T) {
		c := wsDialProtocol(t, h, "graphql-ws")
		wsInit(t, c, admin)
		start(t, c, "a")
		wsNextFor(t, c, "a", "data")
		start(t, c, "a")
		if got := wsCloseCode(t, c, 5*time.Second); got != graph.CloseSubscriberExists {
			t.Fatalf("close code %d, want %d", got, graph.CloseSubscriberExists)
		}
	})
}

// The server notices a peer that vanished without closing (a laptop lid shut, a dropped
// mobile network), which would otherwise hold its subscriptions and its place under the
// per-person cap until TCP gives up: a graphql-transport-ws client is pinged and, if it
// never answers with a pong, disconnected; one that answers stays connected. Legacy
// graphql-ws clients receive that protocol's keep-alive.
func TestWebsocketKeepalive(t *testing.T) {
	const interval = 250 * time.Millisecond
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) { o.WSPingInterval = interval })
	tok := h.token("keepalive-user", auth.RoleCustomer)
	isPing := func(b []byte) bool {
		var m map[string]any
		return json.Unmarshal(b, &m) == nil && m["type"] == "ping"
	}

	t.Run("a client that never answers is disconnected", func(t *testing.T) {
		c := wsDial(t, h)
		wsInit(t, c, tok)
		ctx, cancel := context.WithTimeout(context.Background(), 20*interval)
		defer cancel()
		pings := 0
		for {
			_, b, err := c.Read(ctx)
			if ctx.Err() != nil {
				t.Fatalf("still connected after %v without answering %d pings", 20*interval, pings)
			}
			if err != nil {
				break
			}
			if isPing(b) {
				pings++
			}
		}
		if pings == 0 {
			t.Fatal("disconnected without having been pinged")
		}
	})
	t.Run("a client that answers stays", func(t *testing.T) {
		c := wsDial(t, h)
		wsInit(t, c, tok)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pings := 0
		for until := time.Now().Add(8 * interval); time.Now().Before(until); { // four times what a silent one gets
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("disconnected after answering %d pings: %v", pings, err)
			}
			if isPing(b) {
				pings++
				wsSend(t, c, map[string]any{"type": "pong"})
			}
		}
		if pings < 3 {
			t.Fatalf("%d pings in %v at a %v interval", pings, 8*interval, interval)
		}
		wsSend(t, c, map[string]any{"type": "subscribe", "id": "q", "payload": map[string]any{"query": "{ viewer { subject } }"}})
		if m := wsNextFor(t, c, "q", "next", "error"); m["type"] != "next" {
			t.Fatalf("after the pings: %v", m)
		}
	})
	t.Run("legacy graphql-ws gets keep-alives", func(t *testing.T) {
		c := wsDialProtocol(t, h, "graphql-ws")
		wsInit(t, c, tok)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for kas := 0; kas < 2; {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("after %d keep-alives: %v", kas, err)
			}
			if strings.Contains(string(b), `"type":"ka"`) {
				kas++
			}
		}
	})
}

// A websocket authenticates once, at connection_init, but each operation it starts sees
// the memberships of now: once a person has left a tenant, a new subscription to that
// tenant's numbers on the same connection is refused, as an HTTP request would be.
func TestWebsocketOperationsSeeCurrentMemberships(t *testing.T) {
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.LiveUsage = fakeLive{}
		o.WSMembershipTTL = time.Nanosecond // every operation reads them again
	})
	m := newFixtures(t, h.client).tenant("leaver", "leaver", membership.RoleMember)
	c := wsDial(t, h)
	wsInit(t, c, h.token("leaver", auth.RoleCustomer))
	subscribe := func(id string) map[string]any {
		t.Helper()
		wsSend(t, c, map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{
			"query": fmt.Sprintf(`subscription { usageStats(filter: {tenantID: %q}) { asOf } }`, m.Tenant.ID)}})
		return wsNextFor(t, c, id, "next", "error")
	}
	if got := subscribe("member"); got["type"] != "next" || strings.Contains(fmt.Sprint(got["payload"]), "errors") {
		t.Fatalf("a member's subscription: %v", got)
	}
	h.client.Membership.DeleteOneID(m.Membership.ID).ExecX(auth.SystemContext(context.Background()))
	if got := subscribe("former"); !strings.Contains(fmt.Sprint(got["payload"]), "FORBIDDEN") {
		t.Fatalf("a former member's subscription on the same connection: %v", got)
	}
}

// A browser page may open a websocket only from the service's own origin or one the
// portal's CORS policy admits, scheme included; clients that send no Origin (not
// browsers) may always connect, since the token in connection_init is what authorizes.
func TestWebsocketOrigins(t *testing.T) {
	const portal = "https://portal.example.com"
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.OriginAllowed = func(r *http.Request) bool { return r.Header.Get("Origin") == portal }
	})
	url := "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/"
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{h.srv.URL, true}, // same origin
		{portal, true},
		{"http://portal.example.com", false}, // the admitted host, over another scheme
		{"https://evil.example", false},
	} {
		t.Run("origin "+tc.origin, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: hdr})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.CloseNow()
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("refused with %v, want 403", err)
			}
		})
	}
}

// The subscriptions a dashboard opens together on one connection share one membership
// lookup (they would otherwise cost a database query each); another connection of the
// same person reads its own.
func TestWebsocketBurstSharesOneMembershipLookup(t *testing.T) {
	var lookups atomic.Int64
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.LiveUsage = fakeLive{}
		refresh := o.RefreshViewer
		o.RefreshViewer = func(ctx context.Context, v *auth.Viewer) (*auth.Viewer, error) {
			lookups.Add(1)
			return refresh(ctx, v)
		}
	})
	admin := h.token("burst-admin", auth.RolePlatformAdmin)
	c := wsDial(t, h)
	wsInit(t, c, admin)
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		wsSubscribe(t, c, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for got := map[any]bool{}; len(got) < len(ids); {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d first messages: %v", len(got), len(ids), err)
		}
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["type"] == "next" {
			got[m["id"]] = true
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d membership lookups for %d operations on one connection, want 1", n, len(ids))
	}
	other := wsDial(t, h)
	wsInit(t, other, admin)
	wsSubscribe(t, other, "f")
	wsNextFor(t, other, "f", "next")
	if n := lookups.Load(); n != 2 {
		t.Fatalf("%d membership lookups after a second connection's operation, want 2", n)
	}
}

// cohortLive is fakeLive that records the hub cohort of each subscription.
type cohortLive struct {
	mu      sync.Mutex
	cohorts []uint64
}

func (l *cohortLive) Subscribe(ctx context.Context, f live.Filter) (<-chan *live.Stats, error) {
	l.mu.Lock()
	l.cohorts = append(l.cohorts, live.CohortFrom(ctx))
	l.mu.Unlock()
	return fakeLive{}.Subscribe(ctx, f)
}

// The subscriptions of one websocket connection share a hub cohort, and another
// connection's have another: the hub delivers a connection's messages together, and the
// connection writes them in one batch.
func TestSubscriptionsOfAConnectionShareACohort(t *testing.T) {
	rec := &cohortLive{}
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) { o.LiveUsage = rec })
	admin := h.token("cohort-admin", auth.RolePlatformAdmin)
	one, two := wsDial(t, h), wsDial(t, h)
	wsInit(t, one, admin)
	wsInit(t, two, admin)
	for _, id := range []string{"a", "b"} {
		wsSubscribe(t, one, id)
		wsNextFor(t, one, id, "next")
	}
	wsSubscribe(t, two, "c")
	wsNextFor(t, two, "c", "next")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	c := rec.cohorts
	if len(c) != 3 || c[0] == 0 || c[0] != c[1] || c[2] == 0 || c[2] == c[0] {
		t.Fatalf("cohorts %v: want the first connection's two equal and non-zero, the second's another", c)
	}
}
