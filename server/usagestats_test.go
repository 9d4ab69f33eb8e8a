package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
	"github.com/gsvdev/agentregistry/internal/seed"
	"github.com/gsvdev/agentregistry/internal/subscriptions"
)

// statsConn is a graphql-transport-ws client holding one usageStats subscription.
type statsConn struct {
	c    *websocket.Conn
	msgs chan map[string]any
	errs chan string
}

type statsMsg struct {
	Day struct {
		Requests int `json:"requests"`
		Errors   int `json:"errors"`
	} `json:"day"`
	Recent []struct {
		RequestID string `json:"requestID"`
	} `json:"recent"`
	Resynced bool `json:"resynced"`
}

// statsSelection is what subscribeStats asks for.
const statsSelection = `day { requests errors } recent { requestID } resynced`

// subscribeStats subscribes to usageStats(filter: filter) { statsSelection }.
func subscribeStats(t *testing.T, base, token, filter string) *statsConn {
	t.Helper()
	return subscribeQuery(t, base, token, `subscription { usageStats(filter: `+filter+`) { `+statsSelection+` } }`, nil)
}

// subscribeQuery opens a graphql-transport-ws connection to base, authenticates it with
// token as connection_init's Authorization (what GraphiQL and the portal send), and
// subscribes to query. header is added to the websocket handshake (Origin). A goroutine
// reads the connection into msgs and errs, and answers the server's pings.
func subscribeQuery(t *testing.T, base, token, query string, header http.Header) *statsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: header})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	send := func(v any) {
		b, _ := json.Marshal(v)
		if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("init: %v", err)
		}
		if strings.Contains(string(b), "connection_ack") {
			break
		}
	}
	send(map[string]any{"type": "subscribe", "id": "s1", "payload": map[string]any{"query": query}})
	sc := &statsConn{c: c, msgs: make(chan map[string]any, 64), errs: make(chan string, 4)}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			switch m["type"] {
			case "ping": // the server disconnects a client that does not answer
				_ = c.Write(context.Background(), websocket.MessageText, []byte(`{"type":"pong"}`))
			case "next":
				// A refused subscription arrives as a next with errors and no data.
				if p, _ := m["payload"].(map[string]any); p != nil && p["errors"] != nil && p["data"] == nil {
					sc.errs <- string(b)
					continue
				}
				sc.msgs <- m
			case "error":
				sc.errs <- string(b)
			}
		}
	}()
	return sc
}

// next waits for a message whose stats satisfy ok.
func (s *statsConn) next(t *testing.T, within time.Duration, ok func(statsMsg) bool) statsMsg {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-s.msgs:
			st, err := parseStats(m)
			if err != nil {
				t.Fatal(err)
			}
			if ok(st) {
				return st
			}
		case e := <-s.errs:
			t.Fatalf("subscription error: %s", e)
		case <-deadline:
			t.Fatalf("no matching usageStats message within %v", within)
		}
	}
}

// parseStats reads the usageStats of a "next" message.
func parseStats(m map[string]any) (statsMsg, error) {
	var st statsMsg
	data, _ := m["payload"].(map[string]any)["data"].(map[string]any)
	if data["usageStats"] == nil {
		return st, fmt.Errorf("not a usageStats message: %v", m)
	}
	b, err := json.Marshal(data["usageStats"])
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	return st, err
}

// Two replicas on one PostgreSQL: a buyer subscribed on B sees a call answered by A
// within a second, and a burst of concurrent calls soon after; another buyer's
// subscription sees nothing of them; a filter naming a tenant the viewer does not belong
// to is refused when the subscription starts. (A subscriber that stops reading:
// TestStalledSubscriberDoesNotSlowInvokes.)
func TestUsageStatsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	env, issuer := prodEnv(t)
	a := startReplica(t, env)
	b := startReplica(t, env)
	demo, err := seed.Demo(ctx, a.DB().Client)
	if err != nil {
		t.Fatal(err)
	}
	sys := auth.SystemContext(ctx)
	client := a.DB().Client
	// A second buyer of the same agent.
	rival, err := client.Tenant.Create().SetName("Rival").SetSlug("rival").Save(sys)
	if err != nil {
		t.Fatal(err)
	}
	client.Membership.Create().SetTenantID(rival.ID).SetSubject("rival-user").SetRole(membership.RoleOwner).SaveX(sys)
	rivalSub, err := subscriptions.New(client).Create(sys, subscriptions.CreateParams{TenantID: rival.ID, PlanID: demo.Plan})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rivalSub.QueryConfig().Only(sys); err != nil {
		t.Fatal(err)
	}
	// Unlimited demo plan, so the burst is not rate limited.
	client.Plan.UpdateOneID(demo.Plan).SetRpmPerKey(0).SetRpmPerTenant(0).SetRequestsPerMonth(0).SetTokensPerMonth(0).ExecX(sys)
	key, err := a.Keys().Create(sys, keys.CreateParams{ConfigID: demo.Config, Name: "k", Kind: apikey.KindSecret})
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub string) string {
		return issuer.Token(t, authtest.NewClaims().Subject(sub).RealmRoles(string(auth.RoleCustomer)).Map())
	}
	baseA, baseB := "http://"+a.Addr(), "http://"+b.Addr()

	buyer := subscribeStats(t, baseB, token(seed.CustomerSubject), fmt.Sprintf(`{tenantID: %q}`, demo.BuyerTenant))
	first := buyer.next(t, 5*time.Second, func(statsMsg) bool { return true })
	rivalConn := subscribeStats(t, baseB, token("rival-user"), fmt.Sprintf(`{tenantID: %q}`, rival.ID))
	rivalConn.next(t, 5*time.Second, func(statsMsg) bool { return true })

	start := time.Now()
	if got := invokeStatus(t, baseA, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke on A: %d", got)
	}
	buyer.next(t, time.Second, func(s statsMsg) bool { return s.Day.Requests == first.Day.Requests+1 })
	t.Logf("invoke on A -> message on B in %v", time.Since(start))

	// A burst of concurrent invokes on A: every one reaches B's subscriber.
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	burst := time.Now()
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if invokeStatus(t, baseA, key.Secret) != http.StatusOK {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of 50 concurrent invokes failed", bad)
	}
	t.Logf("50 concurrent invokes took %v", time.Since(burst))
	buyer.next(t, 2*time.Second, func(s statsMsg) bool { return s.Day.Requests == first.Day.Requests+51 })

	// The rival saw none of it.
	select {
	case m := <-rivalConn.msgs:
		t.Fatalf("rival received a message about another tenant's calls: %v", m)
	case <-time.After(700 * time.Millisecond):
	}

	// Refused at subscribe time: another tenant, and no tenant at all.
	for _, filter := range []string{fmt.Sprintf(`{tenantID: %q}`, rival.ID), `{}`, fmt.Sprintf(`{providerTenantID: %q}`, demo.ProviderTenant)} {
		c := subscribeStats(t, baseB, token(seed.CustomerSubject), filter)
		select {
		case e := <-c.errs:
			if !strings.Contains(e, "FORBIDDEN") {
				t.Fatalf("filter %s: %s", filter, e)
			}
		case m := <-c.msgs:
			t.Fatalf("filter %s was accepted: %v", filter, m)
		case <-time.After(3 * time.Second):
			t.Fatalf("filter %s: no answer", filter)
		}
	}
}

// A dashboard must not silently miss calls when the database connections drop (what a
// PostgreSQL restart looks like from here): the live stats travel on the bus's LISTEN
// connection, and a call committed while it is down is never heard. After the bus
// reconnects, the hub re-reads every filter from the database (live.Hub's OnReconnect ->
// requestReload) and the next message counts every call, marked resynced: true.
//
// First only the LISTEN connection is terminated while the database refuses new
// connections (ALLOW_CONNECTIONS false binds superusers too), so that it cannot come back
// before a call commits through the connections the pool already holds: the call is
// certainly committed while the bus is disconnected, which the subscription confirms by
// not showing it. Then every connection of the service is terminated, as a restart does,
// and the service recovers and resyncs again. The machine's PostgreSQL server itself is
// not restarted: other test packages share it.
func TestUsageStatsSurviveDatabaseConnectionLoss(t *testing.T) {
	ctx := context.Background()
	env, issuer := prodEnv(t)
	pg, dsn := dbtest.PostgresURL(t), env["DATABASE_URL"]
	a := startReplica(t, env)
	demo, err := seed.Demo(ctx, a.DB().Client)
	if err != nil {
		t.Fatal(err)
	}
	sys := auth.SystemContext(ctx)
	key, err := a.Keys().Create(sys, keys.CreateParams{ConfigID: demo.Config, Name: "k", Kind: apikey.KindSecret})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	tok := issuer.Token(t, authtest.NewClaims().Subject(seed.CustomerSubject).RealmRoles(string(auth.RoleCustomer)).Map())
	sub := subscribeStats(t, base, tok, fmt.Sprintf(`{tenantID: %q}`, demo.BuyerTenant))
	first := sub.next(t, 5*time.Second, func(statsMsg) bool { return true })
	calls := first.Day.Requests // calls today, as the subscription should show them
	if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke before: %d", got)
	}
	calls++
	sub.next(t, 2*time.Second, func(s statsMsg) bool { return s.Day.Requests == calls })

	// The database's sessions are watched and terminated from a second database.
	admin, drop2, err := dbtest.CreatePostgresDatabase(ctx, pg, "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop2)
	dbName := dsn[strings.LastIndex(dsn, "/")+1:]
	if i := strings.IndexByte(dbName, '?'); i >= 0 {
		dbName = dbName[:i]
	}
	killer, err := sqlOpen(admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killer.Close() })
	allowConnections := func(on bool) {
		t.Helper()
		if _, err := killer.Exec(fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, dbName, on)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = killer.Exec(fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS true`, dbName)) })
	const listener = `application_name = 'agentregistry-pubsub'` // pubsub.PostgresOptions' default
	sessions := func(where string) int {
		t.Helper()
		var n int
		if err := killer.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND `+where, dbName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// 1. The bus alone is cut off, and kept off while a call commits. The pool is warmed
	// first so that the call finds every connection it needs already open.
	held := make([]*sql.Conn, 8)
	for i := range held {
		if held[i], err = a.DB().SQL.Conn(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range held {
		c.Close()
	}
	allowConnections(false)
	var killed int
	if err := killer.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND `+listener, dbName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d LISTEN connections, want 1", killed)
	}
	// pg_terminate_backend only signals: once the session is gone, no NOTIFY reaches it.
	for deadline := time.Now().Add(5 * time.Second); sessions(listener) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the terminated LISTEN session is still there")
		}
	}
	if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke while the bus is down: %d", got)
	}
	calls++
	// The hub hears of calls only through the bus, this replica's own included: the
	// subscription cannot show this one before the bus is back (if it does, the bus was
	// not down and the rest proves nothing).
	quiet := time.After(time.Second)
	for waiting := true; waiting; {
		select {
		case m := <-sub.msgs:
			if st, err := parseStats(m); err == nil && st.Day.Requests >= calls {
				t.Fatalf("the call reached the subscription while its bus was disconnected: %+v", st)
			}
		case <-quiet:
			waiting = false
		}
	}
	if n := sessions(listener); n != 0 {
		t.Fatalf("the bus reconnected while the database refused connections (%d sessions)", n)
	}

	allowConnections(true)
	st := sub.next(t, 10*time.Second, func(s statsMsg) bool { return s.Day.Requests >= calls })
	if st.Day.Requests != calls || !st.Resynced {
		t.Fatalf("the first message counting the call made while the bus was down: %d calls (want %d), resynced %v (want true)",
			st.Day.Requests, calls, st.Resynced)
	}
	// The bus carries calls again.
	if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke after the bus is back: %d", got)
	}
	calls++
	sub.next(t, 2*time.Second, func(s statsMsg) bool { return s.Day.Requests == calls })

	// 2. Every connection to this test's database, the pool's and the bus's, is dropped.
	for drained := false; !drained; {
		select {
		case <-sub.msgs: // what came before: a resynced message below must come after
		default:
			drained = true
		}
	}
	if err := killer.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1`, dbName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed < 2 {
		t.Fatalf("terminated %d connections, want the pool's and the bus's", killed)
	}
	t.Logf("terminated %d connections", killed)

	// The pool reconnects: invokes succeed again within a few seconds. The bus reconnects
	// too, and the subscription is resynced from the database, then follows new calls.
	deadline := time.Now().Add(10 * time.Second)
	for invokeStatus(t, base, key.Secret) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("invokes do not recover after the connections were dropped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	calls++ // at least: a failed invoke may have been recorded too
	sub.next(t, 10*time.Second, func(s statsMsg) bool { return s.Resynced })
	if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke after recovery: %d", got)
	}
	calls++
	st = sub.next(t, 5*time.Second, func(s statsMsg) bool { return s.Day.Requests >= calls })
	t.Logf("after the connection loss the subscription counts %d calls today", st.Day.Requests)
}

func sqlOpen(dsn string) (*sql.DB, error) { return sql.Open("postgres", dsn) }

// prodEnv is the environment of production-mode replicas sharing a fresh PostgreSQL
// database, an echo Langflow and an in-test OIDC issuer whose tokens they accept.
func prodEnv(t *testing.T) (map[string]string, *authtest.Issuer) {
	t.Helper()
	dsn, drop, err := dbtest.CreatePostgresDatabase(context.Background(), dbtest.PostgresURL(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	_, lf := echotest.Start(t, echoruntime.Options{})
	issuer := authtest.NewIssuer(t)
	return map[string]string{
		"ADDR": "127.0.0.1:0", "DATABASE_URL": dsn, "MIGRATE_ON_START": "true",
		"OIDC_ISSUER": issuer.URL(), "LANGFLOW_URL": lf.URL, "OIDC_TENANT_CLAIM": "",
		"APIKEY_SIGNING_KEYS": "t:" + strings.Repeat("cd", 32), "DATA_DIR": t.TempDir(), "LOG_LEVEL": "error",
	}, issuer
}
