package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
)

// coderWebsocket adapts github.com/coder/websocket to gqlgen's websocket transport, as
// gqlgen's own transport.CoderWebsocketImplementation does, and adds WriteText: writing
// an already encoded message. The shared usageStats messages need it (sharedrender.go):
// gqlgen's adapter marshals every message it writes, and re-encoding the same bytes for
// each of thousands of subscribers was a third of the process's work.
type coderWebsocket struct {
	AcceptOptions websocket.AcceptOptions
	// WriteTimeout bounds a write that makes no progress; the connection is then closed.
	// Default defaultWSWriteTimeout.
	WriteTimeout time.Duration
}

// defaultWSWriteTimeout bounds writing to a subscriber. A client that has not read for
// that long, with the connection's buffers full, is closed rather than holding a
// goroutine and its buffers indefinitely.
const defaultWSWriteTimeout = 10 * time.Second

// Accept implements transport.WebsocketImplementation.
func (u coderWebsocket) Accept(w http.ResponseWriter, r *http.Request, options transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	for key, values := range options.ResponseHeader {
		for _, value := range values {
			w.Header().Add(key, value)
		}
	}
	opts := u.AcceptOptions
	for _, p := range options.Subprotocols {
		if !slices.Contains(opts.Subprotocols, p) {
			opts.Subprotocols = append(opts.Subprotocols, p)
		}
	}
	cw := &corkingWriter{ResponseWriter: w}
	conn, err := websocket.Accept(cw, r, &opts)
	if err != nil {
		return nil, err
	}
	c := &coderConn{conn: conn, corked: cw.conn, writeTimeout: u.WriteTimeout}
	if c.writeTimeout <= 0 {
		c.writeTimeout = defaultWSWriteTimeout
	}
	c.writeWatch = time.AfterFunc(time.Hour, c.writeStuck)
	c.writeWatch.Stop()
	return c, nil
}

// coderConn is one accepted connection.
type coderConn struct {
	conn   *websocket.Conn
	corked *corkedConn // what conn writes to (wsbatch.go); nil if the hijack was not ours

	mu           sync.Mutex
	readDeadline *time.Timer
	closeStarted bool

	// Writes are bounded by one timer per connection rather than a deadline context per
	// write: coder/websocket registers a context.AfterFunc for each write whose context
	// can end, and a fresh timeout context per message was a third of what the process
	// allocated at 10,000 subscribers (make bench-subscriptions), with timers and
	// collections that stalled invokes. The timer runs while writes are in flight and
	// restarts whenever one completes, so it fires when no message has been written for
	// writeTimeout (one message that takes longer, to a slow reader, is cut off too).
	writeTimeout time.Duration
	writeWatch   *time.Timer
	writeMu      sync.Mutex
	writing      int       // writes in flight
	writeDue     time.Time // when the writes in flight time out; set with the timer
}

// NextReader implements transport.WebsocketConn. A normal close by the peer is
// transport.ErrWebsocketClosed, which gqlgen does not report as an error.
func (c *coderConn) NextReader() (int, io.Reader, error) {
	typ, data, err := c.conn.Read(context.Background())
	if err != nil {
		switch websocket.CloseStatus(err) {
		case websocket.StatusNormalClosure, websocket.StatusNoStatusRcvd:
			return int(typ), nil, transport.ErrWebsocketClosed
		}
		return int(typ), nil, err
	}
	return int(typ), bytes.NewReader(data), nil
}

// WriteJSON implements transport.WebsocketConn.
func (c *coderConn) WriteJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.writeText(data)
}

// WriteText writes data, which must be one complete JSON message, as a text message.
// It is safe to call concurrently with the transport's own writes. It may return once
// the message is in the connection's batch, before the batch is written (wsbatch.go):
// a failure to write it then shows at a later call, when the connection is closed.
func (c *coderConn) WriteText(data []byte) error { return c.writeText(data) }

// writeMessage hands one text message to coder/websocket.
func (c *coderConn) writeMessage(data []byte) error {
	return c.conn.Write(context.Background(), websocket.MessageText, data)
}

// watched runs write under the write timeout: a write that makes no progress for
// writeTimeout closes the connection (coder/websocket cannot abandon half a frame), which
// fails it.
func (c *coderConn) watched(write func() error) error {
	c.writeMu.Lock()
	c.writing++
	if c.writing == 1 {
		c.armWriteWatch()
	}
	c.writeMu.Unlock()
	err := write()
	c.writeMu.Lock()
	c.writing--
	if c.writing == 0 {
		c.writeWatch.Stop()
	} else {
		c.armWriteWatch() // progress: the others get a full timeout
	}
	c.writeMu.Unlock()
	return err
}

// armWriteWatch (re)starts the write timer; c.writeMu must be held.
func (c *coderConn) armWriteWatch() {
	c.writeDue = time.Now().Add(c.writeTimeout)
	c.writeWatch.Reset(c.writeTimeout)
}

// writeStuck runs when the write timer fires. A timer that fired just as a write
// completed and another began finds writes in flight that are not yet due: it is
// re-armed for the rest. Otherwise the peer has stopped reading, and the connection is
// closed.
func (c *coderConn) writeStuck() {
	c.writeMu.Lock()
	if c.writing == 0 {
		c.writeMu.Unlock()
		return
	}
	if left := time.Until(c.writeDue); left > 0 {
		c.writeWatch.Reset(left)
		c.writeMu.Unlock()
		return
	}
	c.writeMu.Unlock()
	_ = c.conn.CloseNow()
}

// WriteClose implements transport.WebsocketConn. The close handshake waits up to 5s for
// the peer's close frame, so it runs in the background, and only once.
func (c *coderConn) WriteClose(code int, reason string) error {
	c.mu.Lock()
	c.stopReadDeadline()
	if c.closeStarted {
		c.mu.Unlock()
		return nil
	}
	c.closeStarted = true
	c.mu.Unlock()
	go func() { _ = c.conn.Close(websocket.StatusCode(code), reason) }()
	return nil
}

// Close implements io.Closer. While a close handshake runs, it owns the connection.
func (c *coderConn) Close() error {
	c.mu.Lock()
	c.stopReadDeadline()
	handshake := c.closeStarted
	c.mu.Unlock()
	if handshake {
		return nil
	}
	return c.conn.CloseNow()
}

// Subprotocol implements transport.WebsocketConn.
func (c *coderConn) Subprotocol() string { return c.conn.Subprotocol() }

// SetReadLimit implements transport.WebsocketReadLimiter.
func (c *coderConn) SetReadLimit(limit int64) { c.conn.SetReadLimit(limit) }

// SetReadDeadline implements transport.WebsocketReadDeadliner (the keepalive's missing
// pong): coder/websocket has no read deadline, so the connection is closed at t.
func (c *coderConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.stopReadDeadline()
	now := !t.IsZero() && !time.Now().Before(t)
	if !t.IsZero() && !now {
		c.readDeadline = time.AfterFunc(time.Until(t), func() { _ = c.conn.CloseNow() })
	}
	c.mu.Unlock()
	if now {
		return c.conn.CloseNow()
	}
	return nil
}

// stopReadDeadline cancels the read deadline; c.mu must be held.
func (c *coderConn) stopReadDeadline() {
	if c.readDeadline != nil {
		c.readDeadline.Stop()
		c.readDeadline = nil
	}
}
