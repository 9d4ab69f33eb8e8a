package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Close codes of the graphql-transport-ws protocol (github.com/enisdenjo/graphql-ws,
// PROTOCOL.md). gqlgen's transport closes most protocol faults with 1002 instead, so the
// guard below enforces these before messages reach it.
const (
	CloseBadRequest       = 4400
	CloseUnauthorized     = 4401
	CloseForbidden        = 4403
	CloseInitTimeout      = 4408
	CloseSubscriberExists = 4409
	CloseTooManyInits     = 4429
)

const transportWS = "graphql-transport-ws"

// wsLimits bound what one connection and one person may hold open.
type wsLimits struct {
	InitTimeout          time.Duration
	MaxSubscriptions     int           // per connection
	MaxConnectionsPerSub int           // per authenticated subject, across its connections on this replica
	MembershipTTL        time.Duration // how long a connection reuses the memberships it read
}

// wsGuard is a transport.WebsocketImplementation that wraps each accepted connection in
// a protocolConn. It also counts connections per subject.
type wsGuard struct {
	inner         transport.WebsocketImplementation
	originAllowed func(*http.Request) bool // cross-origin pages that may connect; nil: none
	limits        wsLimits

	mu    sync.Mutex
	conns map[string]int // subject -> open authenticated connections

	lastID atomic.Uint64 // numbers the accepted connections (protocolConn.id)
}

func newWSGuard(inner transport.WebsocketImplementation, originAllowed func(*http.Request) bool, limits wsLimits) *wsGuard {
	return &wsGuard{inner: inner, originAllowed: originAllowed, limits: limits, conns: map[string]int{}}
}

type guardSlotKey struct{}

// slot carries the accepted connection from Accept to InitFunc: both see the request's
// context (InitFunc through the transport), and this is the only way to reach the
// connection from there.
type guardSlot struct{ conn *protocolConn }

// Middleware refuses websocket upgrades from pages of origins it does not admit, and puts
// a slot in each request's context; it wraps the handler.
func (g *wsGuard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) && !g.admitsOrigin(r) {
			apperr.WriteHTTP(w, http.StatusForbidden, apperr.Forbidden, "this origin may not open a websocket here")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), guardSlotKey{}, &guardSlot{})))
	})
}

// isUpgrade reports whether r asks for a websocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// admitsOrigin applies the browser origin rule: no Origin (not a browser) and the
// service's own origin pass, any other must be admitted by originAllowed. The token goes
// in connection_init, not in a cookie, so a foreign page could not use a visitor's
// session anyway; this keeps the portal's CORS policy the one list of pages that may
// talk to the API.
func (g *wsGuard) admitsOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return g.originAllowed != nil && g.originAllowed(r)
}

// Accept implements transport.WebsocketImplementation.
func (g *wsGuard) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	conn, err := g.inner.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	pc := &protocolConn{WebsocketConn: conn, limits: g.limits, active: map[string]bool{}, id: g.lastID.Add(1)}
	if slot, ok := r.Context().Value(guardSlotKey{}).(*guardSlot); ok {
		slot.conn = pc
	}
	// Both protocols: a socket that never sends connection_init is never counted against
	// its person's connections (that happens at init), so only this timer ends it. The
	// legacy protocol has no close code of its own for it and gets the same one.
	if g.limits.InitTimeout > 0 {
		pc.initTimer = time.AfterFunc(g.limits.InitTimeout, func() {
			if !pc.initReceived() {
				pc.closeWith(CloseInitTimeout, "Connection initialisation timeout")
			}
		})
	}
	return pc, nil
}

// admit is called by InitFunc once the viewer is known: it enforces the per-subject
// connection cap, arms the token-expiry close, and returns a release for CloseFunc.
func (g *wsGuard) admit(ctx context.Context, subject string, expiry time.Time) (func(), error) {
	g.mu.Lock()
	if g.limits.MaxConnectionsPerSub > 0 && g.conns[subject] >= g.limits.MaxConnectionsPerSub {
		g.mu.Unlock()
		return nil, errTooManyConnections
	}
	g.conns[subject]++
	g.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			g.mu.Lock()
			if g.conns[subject]--; g.conns[subject] <= 0 {
				delete(g.conns, subject)
			}
			g.mu.Unlock()
		})
	}
	if slot, ok := ctx.Value(guardSlotKey{}).(*guardSlot); ok && slot.conn != nil && !expiry.IsZero() {
		slot.conn.expireAt(expiry)
	}
	return release, nil
}

var errTooManyConnections = errors.New("too many connections")

// protocolConn checks each protocol message before gqlgen reads it.
type protocolConn struct {
	transport.WebsocketConn
	limits wsLimits
	id     uint64 // unique within the guard; the live hub's cohort of its subscriptions

	mu          sync.Mutex
	inits       int
	acked       bool
	active      map[string]bool
	subscribing string // the id of the subscribe message gqlgen is reading (see takeSubscribing)
	closed      bool
	initTimer   *time.Timer
	expiryTimer *time.Timer

	viewerMu sync.Mutex   // held while memberships are read, so that a burst shares one read
	viewer   *auth.Viewer // the connection's viewer with the memberships last read
	viewerAt time.Time
}

type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// memberships returns v with memberships at most limits.MembershipTTL old, reading them
// with refresh when those it has are older.
func (c *protocolConn) memberships(ctx context.Context, v *auth.Viewer, refresh func(context.Context, *auth.Viewer) (*auth.Viewer, error)) (*auth.Viewer, error) {
	c.viewerMu.Lock()
	defer c.viewerMu.Unlock()
	if c.viewer != nil && c.viewer.Subject == v.Subject && time.Since(c.viewerAt) < c.limits.MembershipTTL {
		return c.viewer, nil
	}
	fresh, err := refresh(ctx, v)
	if err != nil {
		return nil, err
	}
	c.viewer, c.viewerAt = fresh, time.Now()
	return fresh, nil
}

func (c *protocolConn) initReceived() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inits > 0
}

// closeWith sends the close code and stops the connection; later reads report a closed
// connection, so gqlgen winds down without writing another close frame of its own.
func (c *protocolConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.WebsocketConn.WriteClose(code, reason)
}

func (c *protocolConn) expireAt(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	c.expiryTimer = time.AfterFunc(time.Until(t), func() { c.closeWith(CloseForbidden, "Token expired") })
}

// NextReader implements transport.WebsocketConn: it returns the next message that passes
// the protocol checks, answering the ones it handles itself.
func (c *protocolConn) NextReader() (int, io.Reader, error) {
	for {
		typ, r, err := c.WebsocketConn.NextReader()
		if err != nil {
			return typ, r, err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return typ, nil, err
		}
		pass, err := c.check(data)
		if err != nil {
			return typ, nil, err
		}
		if pass {
			return typ, bytes.NewReader(data), nil
		}
	}
}

// check applies the protocol rules to one incoming message. It reports whether the
// message goes on to gqlgen, or an error after closing the connection.
func (c *protocolConn) check(data []byte) (bool, error) {
	legacy := c.Subprotocol() != transportWS
	var m wsMessage
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		if legacy {
			return true, nil // gqlgen answers the legacy protocol's malformed messages its own way
		}
		c.closeWith(CloseBadRequest, "Invalid message received")
		return false, transport.ErrWebsocketClosed
	}
	var v verdict
	if legacy {
		v = c.decideLegacy(m)
	} else {
		v = c.decide(m)
	}
	switch {
	case v.code != 0:
		c.closeWith(v.code, v.reason)
		return false, transport.ErrWebsocketClosed
	case v.refuse != "":
		go c.refuse(m.ID, v.refuse)
		return false, nil
	}
	return true, nil
}

// verdict is what to do with a message: close with code, refuse the operation, or pass.
type verdict struct {
	code   int
	reason string
	refuse string
}

// decide updates the connection's protocol state for m under the lock.
func (c *protocolConn) decide(m wsMessage) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return verdict{code: CloseBadRequest, reason: "closed"}
	}
	switch m.Type {
	case "connection_init":
		c.inits++
		if c.inits > 1 {
			return verdict{code: CloseTooManyInits, reason: "Too many initialisation requests"}
		}
		if c.initTimer != nil {
			c.initTimer.Stop()
		}
	case "subscribe":
		switch {
		case !c.acked:
			return verdict{code: CloseUnauthorized, reason: "Unauthorized"}
		case m.ID == "":
			return verdict{code: CloseBadRequest, reason: "Subscribe message without id"}
		case c.active[m.ID]:
			return verdict{code: CloseSubscriberExists, reason: "Subscriber for " + m.ID + " already exists"}
		case c.limits.MaxSubscriptions > 0 && len(c.active) >= c.limits.MaxSubscriptions:
			// Refuse this operation, keep the connection: the client did nothing illegal.
			return verdict{refuse: fmt.Sprintf("at most %d subscriptions per connection", c.limits.MaxSubscriptions)}
		}
		c.active[m.ID] = true
		c.subscribing = m.ID
	case "complete":
		delete(c.active, m.ID)
	case "ping", "pong":
	default:
		return verdict{code: CloseBadRequest, reason: "Invalid message type " + m.Type}
	}
	return verdict{}
}

// decideLegacy is decide for the legacy graphql-ws protocol (subscriptions-transport-ws):
// connection_init stops the init timer, start and stop count operations against the
// same cap. Where that protocol defines no close code, the one graphql-transport-ws uses
// for the same fault is sent: a second operation under a live id would otherwise leave
// gqlgen without a handle on the first, which would run until the connection ends.
// Everything else (malformed or unexpected messages, a start before connection_init)
// gqlgen answers as that protocol says.
func (c *protocolConn) decideLegacy(m wsMessage) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return verdict{code: CloseBadRequest, reason: "closed"}
	}
	switch m.Type {
	case "connection_init":
		c.inits++
		if c.initTimer != nil {
			c.initTimer.Stop()
		}
	case "start":
		switch {
		case !c.acked:
			return verdict{}
		case c.active[m.ID]:
			return verdict{code: CloseSubscriberExists, reason: "Subscriber for " + m.ID + " already exists"}
		case c.limits.MaxSubscriptions > 0 && len(c.active) >= c.limits.MaxSubscriptions:
			return verdict{refuse: fmt.Sprintf("at most %d subscriptions per connection", c.limits.MaxSubscriptions)}
		}
		c.active[m.ID] = true
	case "stop":
		delete(c.active, m.ID)
	}
	return verdict{}
}

// refuse answers a subscribe with an error and completes it.
func (c *protocolConn) refuse(id, msg string) {
	payload, _ := json.Marshal([]map[string]any{{"message": msg, "extensions": map[string]any{"code": CodeRateLimited}}})
	_ = c.WriteJSON(wsMessage{Type: "error", ID: id, Payload: payload})
}

// WriteJSON implements transport.WebsocketConn: it watches the server's own messages to
// learn when the connection is acknowledged and when operations complete. It reads the
// message's type and id from the struct gqlgen hands over rather than marshalling it: this
// runs for every message of every subscription, and the connection marshals it anyway.
// Both protocols name these three messages alike.
func (c *protocolConn) WriteJSON(v any) error {
	typ, id := messageTypeID(v)
	switch typ {
	case "connection_ack", "complete", "error":
		c.mu.Lock()
		if typ == "connection_ack" {
			c.acked = true
		} else {
			delete(c.active, id)
		}
		c.mu.Unlock()
	}
	return c.WebsocketConn.WriteJSON(v)
}

// messageTypeID returns the Type and ID fields of an outgoing protocol message (gqlgen's
// message struct has them exported), falling back to a JSON round trip for anything else.
func messageTypeID(v any) (typ, id string) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() == reflect.Struct {
		t, i := rv.FieldByName("Type"), rv.FieldByName("ID")
		if t.IsValid() && t.Kind() == reflect.String && i.IsValid() && i.Kind() == reflect.String {
			return t.String(), i.String()
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", ""
	}
	var m struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Type, m.ID
}

// takeSubscribing returns the id of the subscribe message last handed to gqlgen, once.
// gqlgen reads messages one at a time and creates each subscription's operation before
// it reads the next message, so during that creation this is the operation's id. (gqlgen
// does not tell an operation its id; sharedrender.go needs it to write the operation's
// messages itself.)
func (c *protocolConn) takeSubscribing() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.subscribing
	c.subscribing = ""
	return id
}

// textWriter is a connection that writes encoded messages (coderConn).
type textWriter interface {
	WriteText([]byte) error
}

// canWriteText reports whether writeText works on this connection.
func (c *protocolConn) canWriteText() bool {
	_, ok := c.WebsocketConn.(textWriter)
	return ok
}

// writeText writes an encoded protocol message, bypassing gqlgen (see takeSubscribing).
func (c *protocolConn) writeText(data []byte) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	w, ok := c.WebsocketConn.(textWriter)
	switch {
	case closed:
		return transport.ErrWebsocketClosed
	case !ok:
		return errors.ErrUnsupported
	}
	return w.WriteText(data)
}

// WriteClose implements transport.WebsocketConn: once the guard closed with its own code,
// gqlgen's closing frame is not sent again.
func (c *protocolConn) WriteClose(code int, reason string) error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	c.stopTimers()
	if already {
		return nil
	}
	return c.WebsocketConn.WriteClose(code, reason)
}

// Close implements io.Closer.
func (c *protocolConn) Close() error {
	c.stopTimers()
	return c.WebsocketConn.Close()
}

func (c *protocolConn) stopTimers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
}

// SetReadLimit passes through to the wrapped connection when it supports it.
func (c *protocolConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

// SetReadDeadline passes through to the wrapped connection when it supports it.
func (c *protocolConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}
