package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// recordingConn records each write to the socket.
type recordingConn struct {
	mu     sync.Mutex
	writes []string
	err    error // returned by every write when set
	closed bool
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recordingConn) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func (r *recordingConn) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func TestCoalescingWriter(t *testing.T) {
	write := func(t *testing.T, w *coalescingWriter, s string) {
		t.Helper()
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	release := func(t *testing.T, w *coalescingWriter) {
		t.Helper()
		if err := w.release(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("messages written together leave in one write, in order", func(t *testing.T) {
		conn := &recordingConn{}
		w := newCoalescingWriter(conn)
		for range 3 {
			w.hold()
		}
		write(t, w, "a")
		write(t, w, "b")
		release(t, w)
		write(t, w, "c")
		release(t, w)
		if got := conn.snapshot(); len(got) != 0 {
			t.Fatalf("sent %q while a writer still held", got)
		}
		release(t, w)
		if got := conn.snapshot(); len(got) != 1 || got[0] != "abc" {
			t.Fatalf("writes = %q, want one write of \"abc\"", got)
		}
	})

	t.Run("a lone message is not held back", func(t *testing.T) {
		conn := &recordingConn{}
		w := newCoalescingWriter(conn)
		for _, s := range []string{"one", "two"} {
			w.hold()
			write(t, w, s)
			release(t, w)
		}
		if got := conn.snapshot(); len(got) != 2 || got[0] != "one" || got[1] != "two" {
			t.Fatalf("writes = %q, want \"one\" then \"two\"", got)
		}
	})

	t.Run("a frame written with no holder goes out at once, after what is buffered", func(t *testing.T) {
		conn := &recordingConn{}
		w := newCoalescingWriter(conn)
		write(t, w, "pong")
		if got := conn.snapshot(); len(got) != 1 || got[0] != "pong" {
			t.Fatalf("writes = %q, want \"pong\" at once", got)
		}
		w.hold()
		write(t, w, "msg")
		write(t, w, "close") // e.g. coder/websocket's close frame while a message is in flight
		release(t, w)
		if got := conn.snapshot(); len(got) != 2 || got[1] != "msgclose" {
			t.Fatalf("writes = %q, want \"msgclose\" second", got)
		}
	})

	t.Run("a full buffer is sent without waiting for the other holders", func(t *testing.T) {
		conn := &recordingConn{}
		w := newCoalescingWriter(conn)
		w.hold()
		w.hold()
		big := strings.Repeat("x", maxCoalesced)
		write(t, w, "a")
		write(t, w, big)
		if got := conn.snapshot(); len(got) != 1 || got[0] != "a"+big {
			t.Fatalf("got %d writes, want the full buffer sent at once", len(got))
		}
		write(t, w, "b")
		release(t, w)
		release(t, w)
		if got := conn.snapshot(); len(got) != 2 || got[1] != "b" {
			t.Fatalf("writes after the full buffer = %q, want \"b\"", got[1:])
		}
	})

	t.Run("a failed send is the last writer's error and closes the socket", func(t *testing.T) {
		conn := &recordingConn{err: errors.New("broken pipe")}
		w := newCoalescingWriter(conn)
		w.hold()
		w.hold()
		write(t, w, "a")
		release(t, w)
		write(t, w, "b")
		if err := w.release(); err == nil || !conn.closed {
			t.Fatalf("release = %v, closed = %v: want the socket's error and the socket closed", err, conn.closed)
		}
		if _, err := w.Write([]byte("c")); err == nil {
			t.Fatal("a write with no holder after the failure succeeded")
		}
	})
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	io.Writer
	mu sync.Mutex
	n  int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Writer.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Through a real connection: messages written while another write is in flight reach
// the client in one socket write, whole and in order.
func TestWSMessagesWrittenTogetherShareASocketWrite(t *testing.T) {
	server, client := acceptOne(t, coderWebsocket{})
	sock := &countingConn{Writer: server.out.conn}
	server.out.conn = sock // before any write

	server.out.hold() // a write in flight elsewhere
	for i := range 3 {
		if err := server.WriteText(fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := sock.count(); n != 0 {
		t.Fatalf("%d socket writes while a write was in flight", n)
	}
	if err := server.out.release(); err != nil {
		t.Fatal(err)
	}
	if n := sock.count(); n != 1 {
		t.Fatalf("%d socket writes for 3 messages written together, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		_, got, err := client.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(got) != want {
			t.Fatalf("message %d = %s, want %s", i, got, want)
		}
	}
}

// Many goroutines writing messages of mixed sizes on one connection, as a connection's
// subscriptions do: every message arrives whole, and each writer's in its order.
func TestWSConcurrentWritersKeepMessagesWhole(t *testing.T) {
	server, client := acceptOne(t, coderWebsocket{})
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				pad := strings.Repeat("p", (w*131+i*977)%9000)
				msg := fmt.Appendf(nil, `{"w":%d,"i":%d,"pad":%q}`, w, i, pad)
				if err := server.WriteText(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := make([]int, writers)
	for range writers * each {
		_, data, err := client.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			W, I int
			Pad  string
		}
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
			t.Fatalf("message is not whole: %v (%d bytes)", err, len(data))
		}
		if m.I != next[m.W] || len(m.Pad) != (m.W*131+m.I*977)%9000 {
			t.Fatalf("writer %d: got message %d (pad %d), want %d", m.W, m.I, len(m.Pad), next[m.W])
		}
		next[m.W]++
	}
	wg.Wait()
}

// A response writer that cannot hand over its connection (HTTP/2, say) gets 501 from
// websocket.Accept, as before the coalescing wrapper: nothing half-upgraded.
func TestWSAcceptWithoutHijackerAnswers501(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/graphql", nil)
	for k, v := range map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
	} {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	if _, err := (coderWebsocket{}).Accept(rec, req, transport.WebsocketAcceptOptions{}); err == nil {
		t.Fatal("Accept succeeded without a hijackable connection")
	}
	if rec.Code != http.StatusNotImplemented {
		t.Fatalf("status %d, want 501", rec.Code)
	}
}
