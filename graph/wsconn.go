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
}

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
	conn, err := websocket.Accept(w, r, &opts)
	if err != nil {
		return nil, err
	}
	return &coderConn{conn: conn}, nil
}

// coderConn is one accepted connection.
type coderConn struct {
	conn *websocket.Conn

	mu           sync.Mutex
	readDeadline *time.Timer
	closeStarted bool
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
	return c.conn.Write(context.Background(), websocket.MessageText, data)
}

// WriteText writes data, which must be one complete JSON message, as a text message.
// It is safe to call concurrently with the transport's own writes. If ctx ends first
// the connection is closed (coder/websocket cannot abandon half a frame).
func (c *coderConn) WriteText(ctx context.Context, data []byte) error {
	return c.conn.Write(ctx, websocket.MessageText, data)
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
