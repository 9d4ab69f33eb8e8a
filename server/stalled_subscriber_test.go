package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/seed"
)

// wsWriteTimeout is how long the server lets a write to a websocket make no progress
// before it closes the connection: graph/wsconn.go's defaultWSWriteTimeout, which the
// server does not override (graph.Options has no write timeout).
const wsWriteTimeout = 10 * time.Second

// stallBound bounds every invoke made while a subscriber has stopped reading. It is not a
// performance target: a normal invoke takes a few milliseconds here (the test logs the
// baseline), and 2s is hundreds of times that, room for a noisy machine. What it catches
// is an invoke that waits on the stuck write: such an invoke ends only when the write
// timeout closes the connection, and for those started in the window the test checks
// (at least 3s before the close) that is further away than stallBound.
const stallBound = 2 * time.Second

// Users rely on a dashboard that stops reading (a laptop lid closed, a frozen tab, a
// proxy that buffers) never slowing the gateway: invokes answer as fast as without it,
// other dashboards on the same instance keep getting their messages within a second, and
// the stuck connection is closed after the websocket write timeout rather than held.
//
// The stalled client subscribes 20 times on one connection (the per-connection maximum)
// with a selection that makes every flush send it most of a megabyte, and never reads
// again. The socket buffers fill within seconds and the server's writes to it block; the
// server shows it by replacing the messages those subscriptions' writers no longer take
// (the live_usage_messages_replaced_total metric) and, wsWriteTimeout later, by closing
// the connection (live_usage_subscriptions falls back to the healthy subscriber alone).
// The invokes made in between are the ones made while the server was stuck; the same
// number made before the stalled client came are the baseline.
func TestStalledSubscriberDoesNotSlowInvokes(t *testing.T) {
	ctx := context.Background()
	env, issuer := prodEnv(t)
	// The missing-pong deadline (two ping intervals) would close a client that stopped
	// reading too, whether or not the server's writes block: out of the way, so that what
	// ends the stalled connection is the write timeout, the sign its writes were stuck.
	env["WS_PING_INTERVAL"] = "1h"
	a := startReplica(t, env)
	demo, err := seed.Demo(ctx, a.DB().Client)
	if err != nil {
		t.Fatal(err)
	}
	sys := auth.SystemContext(ctx)
	a.DB().Client.Plan.UpdateOneID(demo.Plan).SetRpmPerKey(0).SetRpmPerTenant(0).SetRequestsPerMonth(0).SetTokensPerMonth(0).ExecX(sys)
	key, err := a.Keys().Create(sys, keys.CreateParams{ConfigID: demo.Config, Name: "k", Kind: apikey.KindSecret})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr()
	tok := issuer.Token(t, authtest.NewClaims().Subject(seed.CustomerSubject).RealmRoles(string(auth.RoleCustomer)).Map())
	// The same request for the healthy and the stalled subscriptions: they share one
	// rendering of each message (graph/sharedrender.go), the case where a stalled reader
	// could most easily hold up the others. The recent calls' fields are repeated under
	// aliases to make each message about 40 KB: the kernel lets the server queue up to
	// 4 MiB (net.ipv4.tcp_wmem's default maximum) for a client that does not read before
	// its writes block, which takes dashboard-sized messages minutes to fill.
	var recent strings.Builder
	for i := range 20 {
		fmt.Fprintf(&recent, " id%d: requestID at%d: at", i, i)
	}
	query := fmt.Sprintf(`subscription { usageStats(filter: {tenantID: %q}) {
		day { requests errors inputTokens outputTokens } period { requests errors }
		lastMinute { requests p50Ms p95Ms } asOf resynced
		recent { requestID status inputTokens outputTokens elapsedMs at errorCode%s } } }`, demo.BuyerTenant, recent.String())

	healthy := subscribeQuery(t, base, tok, query, nil)
	first := healthy.next(t, 5*time.Second, func(statsMsg) bool { return true })
	want := first.Day.Requests // the calls today, as the healthy subscriber should show them

	// Baseline: sequential invokes with only the healthy subscriber. They also fill the
	// recent calls (20), so that every later message is full size.
	const n = 40
	var baseline []time.Duration
	for range n {
		start := time.Now()
		if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
			t.Fatalf("invoke: %d", got)
		}
		baseline = append(baseline, time.Since(start))
		want++
		time.Sleep(invokePace - min(invokePace, time.Since(start)))
	}
	healthy.next(t, 2*time.Second, func(s statsMsg) bool { return s.Day.Requests == want })

	stalled := dialStalledSubscriber(t, a.Addr(), tok, query, 20)
	defer stalled.Close()
	waitMetric(t, base, "live_usage_subscriptions", 5*time.Second, func(v float64) bool { return v == 21 })
	replacedBefore := metric(t, base, "live_usage_messages_replaced_total")

	// What the healthy subscriber shows, and when: read in the background from now on.
	var seen []sighting // read once readDone is closed
	readCtx, stopReading := context.WithCancel(ctx)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			select {
			case m := <-healthy.msgs:
				st, err := parseStats(m)
				if err != nil {
					continue
				}
				seen = append(seen, sighting{at: time.Now(), requests: st.Day.Requests})
			case <-readCtx.Done():
				return
			}
		}
	}()
	// The server's side of the stall: when the stalled subscriptions' messages start
	// being replaced (their writers are stuck), and when the connection is closed.
	var backedUp, closed time.Time
	var replacedAtClose float64
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for time.Since(stalled.stalled) < 45*time.Second {
			if backedUp.IsZero() && metricOr(base, "live_usage_messages_replaced_total", 0) >= replacedBefore+20 {
				backedUp = time.Now()
			}
			if subs := metricOr(base, "live_usage_subscriptions", -1); subs >= 0 && subs <= 1 {
				closed = time.Now()
				replacedAtClose = metricOr(base, "live_usage_messages_replaced_total", 0)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Sequential invokes at the same pace until the server gives up on the stalled client.
	var calls []call
	for {
		select {
		case <-watchDone:
		default:
			start := time.Now()
			if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
				t.Fatalf("invoke with a stalled subscriber: %d", got)
			}
			want++
			calls = append(calls, call{start: start, end: time.Now(), total: want})
			time.Sleep(invokePace - min(invokePace, time.Since(start)))
			continue
		}
		break
	}
	if closed.IsZero() {
		t.Fatalf("the stalled connection is still open %v after it stopped reading (backed up at %v): "+
			"the server's writes to it never blocked, or a blocked write is not cut off after %v",
			time.Since(stalled.stalled), since(stalled.stalled, backedUp), wsWriteTimeout)
	}
	t.Logf("stalled client: backed up after %v, closed by the server after %v",
		since(stalled.stalled, backedUp), since(stalled.stalled, closed))

	// No invoke waited for the stalled client, at any point.
	var slow []time.Duration
	for _, c := range calls {
		if d := c.end.Sub(c.start); d > stallBound {
			slow = append(slow, d)
		}
	}
	if len(slow) > 0 {
		t.Errorf("%d of %d invokes made with a stalled subscriber took more than %v (up to %v): invokes wait on it",
			len(slow), len(calls), stallBound, slices.Max(slow))
	}
	// The healthy subscriber showed each call within a second of its answer. (Calls
	// answered in the last second of reading may not be shown yet, and are left out.)
	time.Sleep(time.Second)
	stopReading()
	<-readDone
	readStop := time.Now()
	var worst time.Duration
	late, checked := 0, 0
	for _, c := range calls {
		if c.end.After(readStop.Add(-time.Second)) {
			break
		}
		checked++
		lag := readStop.Sub(c.end) // never shown
		if i := slices.IndexFunc(seen, func(s sighting) bool { return s.requests >= c.total }); i >= 0 {
			lag = seen[i].at.Sub(c.end)
		}
		worst = max(worst, lag)
		if lag > time.Second {
			late++
		}
	}
	if late > 0 {
		t.Errorf("the healthy subscriber showed %d of %d calls more than a second after their answer (up to %v) while another was stalled",
			late, checked, worst.Round(time.Millisecond))
	} else {
		t.Logf("the healthy subscriber showed each of %d calls within %v of its answer", checked, worst.Round(time.Millisecond))
	}

	// The server closed the TCP connection itself: after the data it had managed to send,
	// the stalled client reads the end of the stream.
	if err := drainUntilClosed(stalled, 10*time.Second); err != nil {
		t.Errorf("the stalled connection: %v", err)
	}

	// The healthy subscriber is still served once the stalled one is gone.
	if got := invokeStatus(t, base, key.Secret); got != http.StatusOK {
		t.Fatalf("invoke after the close: %d", got)
	}
	want++
	healthy.next(t, 2*time.Second, func(s statsMsg) bool { return s.Day.Requests == want })

	// The window in which the server was certainly stuck writing to the stalled client:
	// from when its writers were seen falling behind, but no earlier than a write timeout
	// before the close (the write that timed out made no progress since then), to 3s
	// before the close was seen. An invoke started in it that waited on the stuck write
	// would have ended at the close at the earliest, 3s minus the metric's polling delay
	// later: more than stallBound. The latencies compared are of the last n invokes in it.
	if backedUp.IsZero() {
		t.Fatalf("the stalled connection was closed (replaced messages: %v -> %v) without its writers ever falling behind",
			replacedBefore, replacedAtClose)
	}
	from := backedUp
	if t0 := closed.Add(-wsWriteTimeout); t0.After(from) {
		from = t0
	}
	to := closed.Add(-3 * time.Second)
	var during []time.Duration
	for _, c := range calls {
		if !c.start.Before(from) && !c.start.After(to) {
			during = append(during, c.end.Sub(c.start))
		}
	}
	t.Logf("%d sequential invokes without a stalled subscriber: median %v, max %v", n, median(baseline), slices.Max(baseline))
	if len(during) < n {
		t.Fatalf("only %d invokes started while the server was seen stuck writing (%v, from %v after the stall to %v before the close; "+
			"want %d at one per %v): the server fell behind only %v before closing the connection, or invokes are slow",
			len(during), max(0, to.Sub(from)).Round(time.Millisecond), from.Sub(stalled.stalled).Round(time.Millisecond),
			closed.Sub(to), n, invokePace, closed.Sub(backedUp).Round(time.Millisecond))
	}
	during = during[len(during)-n:]
	t.Logf("%d sequential invokes while the server is stuck writing to a stalled subscriber: median %v, max %v", n, median(during), slices.Max(during))
}

// invokePace is the time between the starts of two sequential invokes (unless one takes
// longer).
const invokePace = 50 * time.Millisecond

type call struct {
	start, end time.Time
	total      int // calls today once this one is answered
}

type sighting struct {
	at       time.Time
	requests int
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func since(from, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}

// stalledConn is a websocket client connection that stopped reading after subscribing.
type stalledConn struct {
	net.Conn
	stalled time.Time // when it stopped reading
	rest    *bufio.Reader
}

// dialStalledSubscriber opens a graphql-transport-ws connection on a bare TCP socket
// with a small receive buffer, authenticates with token, subscribes subs times to query
// and then never reads again: what the server sends piles up in the kernel's buffers
// until its writes block.
func dialStalledSubscriber(t *testing.T, addr, token, query string, subs int) *stalledConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	fmt.Fprintf(conn, "GET /graphql HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(nonce))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket handshake: %s", resp.Status)
	}
	send := func(v any) {
		b, _ := json.Marshal(v)
		if err := writeClientFrame(conn, b); err != nil {
			t.Fatal(err)
		}
	}
	send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	for {
		msg, err := readServerFrame(br)
		if err != nil {
			t.Fatalf("waiting for connection_ack: %v", err)
		}
		if strings.Contains(string(msg), `"connection_ack"`) {
			break
		}
	}
	for i := range subs {
		send(map[string]any{"type": "subscribe", "id": "s" + strconv.Itoa(i), "payload": map[string]any{"query": query}})
	}
	_ = conn.SetDeadline(time.Time{})
	return &stalledConn{Conn: conn, stalled: time.Now(), rest: br}
}

// writeClientFrame writes one masked text frame (clients must mask, RFC 6455 5.3).
func writeClientFrame(w io.Writer, payload []byte) error {
	frame := []byte{0x81} // FIN, text
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n < 1<<16:
		frame = append(frame, 0x80|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	default:
		frame = append(frame, 0x80|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	_, err := w.Write(frame)
	return err
}

// readServerFrame reads one unmasked frame's payload (the handshake's messages are
// small and unfragmented).
func readServerFrame(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload := make([]byte, n)
	_, err := io.ReadFull(r, payload)
	return payload, err
}

// drainUntilClosed reads what the server sent until the server's end of the stream, and
// fails if the stream is still open after within.
func drainUntilClosed(c *stalledConn, within time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(within))
	n, err := io.Copy(io.Discard, c.rest)
	switch {
	case err == nil:
		return nil // EOF: the server closed it
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("still open %v after the server dropped its subscriptions (%d bytes read)", within, n)
	case isReset(err):
		return nil // closed by the server with data unread on its side
	}
	return err
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// metric reads one unlabelled sample from the server's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	v, err := readMetric(base, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func metricOr(base, name string, def float64) float64 {
	v, err := readMetric(base, name)
	if err != nil {
		return def
	}
	return v
}

func readMetric(base, name string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

func waitMetric(t *testing.T, base, name string, within time.Duration, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := metric(t, base, name)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after %v", name, v, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
