package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// Subscribers of one filter that sent the same request share one rendering of each
// message. Sharing never crosses what the request asked: the same document with other
// variables gets its own rendering, and so does another tenant (another filter, hence
// another message). The GraphQL operations observer runs once per rendering, which is
// how the test counts them.
func TestUsageStatsSubscribersShareRenderings(t *testing.T) {
	h, hub, renders := newLiveHarness(t)
	fx := newFixtures(t, h.client)
	a := fx.tenant("share-a", "share-a-user", membership.RoleOwner)
	b := fx.tenant("share-b", "share-b-user", membership.RoleOwner)
	admin := h.token("share-admin", auth.RolePlatformAdmin)

	const doc = `subscription($f: UsageStatsFilter!, $recent: Boolean!) {
		usageStats(filter: $f) { day { requests outputTokens } recent @include(if: $recent) { requestID } } }`
	type sub struct {
		name string
		c    *websocket.Conn
	}
	open := func(name string, tenant pulid.ID, recent bool) sub {
		c := wsDial(t, h)
		wsInit(t, c, admin)
		wsSend(t, c, map[string]any{"type": "subscribe", "id": "s", "payload": map[string]any{
			"query": doc, "variables": map[string]any{"f": map[string]any{"tenantID": tenant}, "recent": recent}}})
		wsNextFor(t, c, "s", "next") // the current state
		return sub{name, c}
	}
	sameA := []sub{open("a1", a.Tenant.ID, true), open("a2", a.Tenant.ID, true), open("a3", a.Tenant.ID, true)}
	otherVarsA := open("a-without-recent", a.Tenant.ID, false)
	sameB := open("b", b.Tenant.ID, true)

	before := renders.Load()
	hub.Publish([]usage.Event{callOf(a.Tenant.ID, 1), callOf(a.Tenant.ID, 2), callOf(b.Tenant.ID, 1)})

	data := func(s sub) map[string]any {
		t.Helper()
		m := wsNextFor(t, s.c, "s", "next")
		d, _ := m["payload"].(map[string]any)["data"].(map[string]any)["usageStats"].(map[string]any)
		if d == nil {
			t.Fatalf("%s: no usageStats in %v", s.name, m)
		}
		return d
	}
	first := data(sameA[0])
	if got := jsonString(first["day"]); got != `{"outputTokens":14,"requests":2}` {
		t.Fatalf("a1 day %s, want tenant A's 2 calls", got)
	}
	for _, s := range sameA[1:] {
		if got := data(s); !reflect.DeepEqual(got, first) {
			t.Fatalf("%s got %s, a1 got %s", s.name, jsonString(got), jsonString(first))
		}
	}
	if got := jsonString(data(otherVarsA)); got != `{"day":{"outputTokens":14,"requests":2}}` {
		t.Fatalf("the same document without recent got %s", got)
	}
	gotB := data(sameB)
	if got := jsonString(gotB["day"]); got != `{"outputTokens":7,"requests":1}` {
		t.Fatalf("tenant B got %s: another tenant's numbers with the same document", got)
	}
	if got := jsonString(gotB["recent"]); got != fmt.Sprintf(`[{"requestID":"call-%s-1"}]`, b.Tenant.ID) {
		t.Fatalf("tenant B's recent calls %s", got)
	}
	// Five messages, three distinct requests: three renderings.
	if got := renders.Load() - before; got != 3 {
		t.Fatalf("%d renderings for 5 subscribers asking 3 distinct requests, want 3", got)
	}
}

// newLiveHarness is a harness with a live hub on the in-process bus (50ms interval) and a
// count of the renderings of subscription messages (by renderUsageStats or by gqlgen), as
// the GraphQL operation metrics see them.
func newLiveHarness(t *testing.T) (*harness, *live.Hub, *atomic.Int64) {
	var hub *live.Hub
	renders := new(atomic.Int64)
	h := newHarness(t, database.DriverSQLite, func(o *graph.Options) {
		o.LiveUsage = liveUsageFunc(func() graph.LiveUsage { return hub })
		o.ObserveOperation = func(_, opType string, _ time.Duration, _ bool) {
			if opType == "subscription" {
				renders.Add(1)
			}
		}
	})
	bus := pubsub.NewMemory()
	t.Cleanup(func() { _ = bus.Close() })
	hub = live.NewHub(h.client, bus, live.Options{Interval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = hub.Close() })
	return h, hub, renders
}

func callOf(tenant pulid.ID, n int) usage.Event {
	return usage.Event{
		RequestID: fmt.Sprintf("call-%s-%d", tenant, n), TenantID: tenant, ProviderTenantID: pulid.MustNew("ten"),
		ConfigID: pulid.MustNew("cfg"), AgentID: pulid.MustNew("agt"), APIKeyID: pulid.MustNew("key"),
		Status: 200, InputTokens: 1, OutputTokens: 7, ElapsedMS: 3, StartedAt: time.Now(),
	}
}

// The server writes the shared messages itself; each still carries its own subscription's
// id, whatever the client put in its extensions.
func TestUsageStatsMessagesCarryTheirSubscriptionID(t *testing.T) {
	h, hub, _ := newLiveHarness(t)
	a := newFixtures(t, h.client).tenant("ids-a", "ids-a-user", membership.RoleOwner)
	c := wsDial(t, h)
	wsInit(t, c, h.token("ids-admin", auth.RolePlatformAdmin))
	// Different selections, so that messages swapped between the two would show.
	query := `subscription { usageStats(filter: {tenantID: %q}) { day { %s } } }`
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "one", "payload": map[string]any{
		"query": fmt.Sprintf(query, a.Tenant.ID, "requests")}})
	wsSend(t, c, map[string]any{"type": "subscribe", "id": "two", "payload": map[string]any{
		"query": fmt.Sprintf(query, a.Tenant.ID, "outputTokens"), "extensions": map[string]any{"agentregistry.subscriptionID": "one"}}})

	seen := map[string][]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	published := false
	for len(seen["one"]) < 2 || len(seen["two"]) < 2 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading (seen %v): %v", seen, err)
		}
		var m struct {
			ID, Type string
			Payload  json.RawMessage
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("not JSON: %s", b)
		}
		if m.Type != "next" || (m.ID != "one" && m.ID != "two") {
			t.Fatalf("unexpected message %s", b)
		}
		seen[m.ID] = append(seen[m.ID], string(m.Payload))
		if !published && len(seen["one"]) == 1 && len(seen["two"]) == 1 {
			hub.Publish([]usage.Event{callOf(a.Tenant.ID, 1)})
			published = true
		}
	}
	want := map[string][]string{
		"one": {`{"data":{"usageStats":{"day":{"requests":0}}}}`, `{"data":{"usageStats":{"day":{"requests":1}}}}`},
		"two": {`{"data":{"usageStats":{"day":{"outputTokens":0}}}}`, `{"data":{"usageStats":{"day":{"outputTokens":7}}}}`},
	}
	for id, w := range want {
		if !reflect.DeepEqual(seen[id], w) {
			t.Fatalf("subscription %s got %v, want %v", id, seen[id], w)
		}
	}
}

// On the legacy graphql-ws protocol gqlgen sends the messages, and subscribers still share
// the rendering.
func TestUsageStatsLegacyProtocolSharesRenderings(t *testing.T) {
	h, hub, renders := newLiveHarness(t)
	a := newFixtures(t, h.client).tenant("legacy-a", "legacy-a-user", membership.RoleOwner)
	query := fmt.Sprintf(`subscription { usageStats(filter: {tenantID: %q}) { day { requests } } }`, a.Tenant.ID)
	open := func() *websocket.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/",
			&websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + h.token("legacy-admin", auth.RolePlatformAdmin)}})
		wsSend(t, c, map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": query}})
		return c
	}
	data := func(c *websocket.Conn) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("no data: %v", err)
			}
			var m struct {
				ID, Type string
				Payload  json.RawMessage
			}
			_ = json.Unmarshal(b, &m)
			if m.Type == "data" && m.ID == "1" {
				return string(m.Payload)
			}
		}
	}
	conns := []*websocket.Conn{open(), open(), open()}
	for _, c := range conns {
		data(c) // the current state
	}
	before := renders.Load()
	hub.Publish([]usage.Event{callOf(a.Tenant.ID, 1)})
	for i, c := range conns {
		if got := data(c); got != `{"data":{"usageStats":{"day":{"requests":1}}}}` {
			t.Fatalf("connection %d got %s", i, got)
		}
	}
	if got := renders.Load() - before; got != 1 {
		t.Fatalf("%d renderings for three subscribers of one request, want 1", got)
	}
}

// liveUsageFunc defers to a hub created after the harness (the hub needs its client).
type liveUsageFunc func() graph.LiveUsage

func (f liveUsageFunc) Subscribe(ctx context.Context, flt live.Filter) (<-chan *live.Stats, error) {
	return f().Subscribe(ctx, flt)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
