package pubsub_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	neturl "net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/gsvdev/agentregistry/internal/pubsub"
)

var appSeq atomic.Uint64

// newPG starts a "replica" whose listener session carries a unique application_name,
// so that a test can find (and kill) exactly its backend.
func newPG(t *testing.T, url string, opts pubsub.PostgresOptions) (*pubsub.Postgres, string) {
	t.Helper()
	if opts.ApplicationName == "" {
		opts.ApplicationName = fmt.Sprintf("pubsubtest-%d-%d", time.Now().UnixNano(), appSeq.Add(1))
	}
	b, err := pubsub.NewPostgres(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, opts.ApplicationName
}

func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestPostgresAcrossReplicas(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	a, _ := newPG(t, url, pubsub.PostgresOptions{})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer b.Subscribe(topic, in.fn)()

	start := time.Now()
	if err := a.Publish(context.Background(), topic, []byte(`{"revoked":"abc"}`)); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second) // the API-key cache promise: other replicas within 1 s
	t.Logf("delivered across replicas in %v", time.Since(start))
	if got := in.all()[0]; got != `{"revoked":"abc"}` {
		t.Fatalf("got %q", got)
	}
}

func TestPostgresPublisherReceivesOwnMessageOnce(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	a, _ := newPG(t, url, pubsub.PostgresOptions{})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	mine, theirs := newInbox(), newInbox()
	defer a.Subscribe(topic, mine.fn)()
	defer b.Subscribe(topic, theirs.fn)()

	for i := range 3 {
		if err := a.Publish(context.Background(), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	mine.waitN(t, 3, time.Second)
	theirs.waitN(t, 3, time.Second)
	mine.quiet(t, 3, 300*time.Millisecond)
	if got := strings.Join(mine.all(), ","); got != "0,1,2" {
		t.Fatalf("publisher received %q, want 0,1,2 once each", got)
	}
}

func TestPostgresPayloads(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	a, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	ctx := context.Background()

	tooBig := []byte(strings.Repeat("a", pubsub.MaxNotifyPayload))
	if err := a.Publish(ctx, topic, tooBig); !errors.Is(err, pubsub.ErrPayloadTooLarge) {
		t.Fatalf("Publish(%d bytes) = %v, want ErrPayloadTooLarge", len(tooBig), err)
	}
	if err := a.Publish(ctx, topic, []byte(strings.Repeat("x", 9000))); !errors.Is(err, pubsub.ErrPayloadTooLarge) {
		t.Fatalf("Publish(9000 bytes) = %v, want ErrPayloadTooLarge", err)
	}
	largest := strings.Repeat("é", (pubsub.MaxNotifyPayload-1)/2) // fits, tag byte included
	binary := "\x00\xff\xfe binary\x00"
	for _, p := range []string{largest, binary, ""} {
		if err := a.Publish(ctx, topic, []byte(p)); err != nil {
			t.Fatalf("Publish(%d bytes): %v", len(p), err)
		}
	}
	in.waitN(t, 3, 2*time.Second)
	got := in.all()
	if got[0] != largest || got[1] != binary || got[2] != "" {
		t.Fatalf("payloads changed in transit: lengths %d %d %d", len(got[0]), len(got[1]), len(got[2]))
	}
}

func TestPostgresTopicsAreDistinctChannels(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	a, _ := newPG(t, url, pubsub.PostgresOptions{})
	base := uniqueTopic(t)
	// These map onto the same sanitised name; the hash suffix keeps them apart.
	dotted, underscored := base+".x", strings.ReplaceAll(base, ".", "_")+"_x"
	d, u := newInbox(), newInbox()
	defer a.Subscribe(dotted, d.fn)()
	defer a.Subscribe(underscored, u.fn)()
	if err := a.Publish(context.Background(), dotted, []byte("d")); err != nil {
		t.Fatal(err)
	}
	d.waitN(t, 1, time.Second)
	u.quiet(t, 0, 200*time.Millisecond)
}

// listenerQuery returns the last statement of the bus's listener session.
func listenerQuery(t *testing.T, db *sql.DB, app string) string {
	t.Helper()
	var q string
	err := db.QueryRow(`SELECT query FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&q)
	if err != nil {
		t.Fatalf("listener session %q: %v", app, err)
	}
	return q
}

func TestPostgresUnlistenAfterLastCancel(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	db := openDB(t, url)
	a, app := newPG(t, url, pubsub.PostgresOptions{})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	ch := a.Channel(topic)

	first, second := newInbox(), newInbox()
	cancel1 := a.Subscribe(topic, first.fn)
	if q := listenerQuery(t, db, app); q != `LISTEN "`+ch+`"` {
		t.Fatalf("after first Subscribe the listener ran %q, want LISTEN %q", q, ch)
	}
	cancel2 := a.Subscribe(topic, second.fn)
	cancel1()
	// One subscriber left: the channel must still be listened to.
	if err := b.Publish(context.Background(), topic, []byte("1")); err != nil {
		t.Fatal(err)
	}
	second.waitN(t, 1, time.Second)
	first.quiet(t, 0, 0)

	cancel2()
	deadline := time.Now().Add(2 * time.Second)
	for {
		q := listenerQuery(t, db, app)
		if q == `UNLISTEN "`+ch+`"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last cancel the listener's last statement is %q, want UNLISTEN %q", q, ch)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Publish(context.Background(), topic, []byte("2")); err != nil {
		t.Fatal(err)
	}
	second.quiet(t, 1, 200*time.Millisecond)
}

func TestPostgresResubscribeRacingCancel(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	a, _ := newPG(t, url, pubsub.PostgresOptions{})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	// Each cancel of the last subscriber queues an UNLISTEN; the Subscribe right behind
	// it must not end up deaf.
	for range 20 {
		a.Subscribe(topic, func([]byte) {})()
	}
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	if err := b.Publish(context.Background(), topic, []byte("x")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
}

func TestPostgresReconnect(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	db := openDB(t, url)
	a, app := newPG(t, url, pubsub.PostgresOptions{MinReconnect: 50 * time.Millisecond})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	reconnected := make(chan struct{}, 10)
	defer a.OnReconnect(func() { reconnected <- struct{}{} })()

	var killed int
	err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate listener backend: killed %d, %v", killed, err)
	}
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("OnReconnect did not fire after the listener's backend was terminated")
	}
	// The LISTEN was re-established on the new session.
	if err := b.Publish(context.Background(), topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
	if q := listenerQuery(t, db, app); !strings.HasPrefix(q, "LISTEN") {
		t.Logf("listener's last statement: %q", q)
	}
}

func TestPostgresUnreachableDoesNotHang(t *testing.T) {
	// Nothing listens on port 1; no database needed.
	b, err := pubsub.NewPostgres("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		pubsub.PostgresOptions{SubscribeTimeout: 200 * time.Millisecond, MaxReconnect: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel := b.Subscribe("t", func([]byte) {})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Subscribe blocked %v with the database down", d)
	}
	cancel()
	if err := b.Publish(context.Background(), "t", []byte("x")); err == nil {
		t.Fatal("Publish succeeded with the database down")
	}
	start = time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestPostgresCloseEndsGoroutines(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	baseline := runtime.NumGoroutine()
	b, err := pubsub.NewPostgres(url, pubsub.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := newInbox()
	for i := range 5 {
		b.Subscribe(fmt.Sprintf("%s.%d", uniqueTopic(t), i%2), func([]byte) {})
	}
	topic := uniqueTopic(t)
	b.Subscribe(topic, in.fn)
	if err := b.Publish(context.Background(), topic, []byte("x")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), topic, []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	goroutinesSettle(t, baseline)
}

func TestPostgresSilentlyDeadListenerIsReplaced(t *testing.T) {
	url := serviceURL(t, "TEST_DATABASE_URL")
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, u.Host)
	u.Host = px.addr()
	a, _ := newPG(t, u.String(), pubsub.PostgresOptions{
		PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond, MinReconnect: 50 * time.Millisecond,
	})
	b, _ := newPG(t, url, pubsub.PostgresOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	reconnected := make(chan struct{}, 10)
	defer a.OnReconnect(func() { reconnected <- struct{}{} })()

	px.freeze() // the listener's socket stays open but nothing gets through
	if err := b.Publish(context.Background(), topic, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("a silently dead listener connection was not replaced")
	}
	if err := b.Publish(context.Background(), topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
	if got := in.all()[0]; got != "after" {
		t.Fatalf("got %q, want the message published after the reconnect", got)
	}
}
