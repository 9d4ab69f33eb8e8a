package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// The usageStats subscription sends one message to every subscriber of a filter: the hub
// builds a live.Stats per filter and hands the same pointer to each. gqlgen would still
// render it once per subscriber (execute the selection, encode the response, encode the
// protocol message around it), which at thousands of subscribers is most of the
// process's work. shareRenders makes the subscribers that sent the same request
// (document, operation name and variables) share one rendering per message:
//
//  1. as the operation middleware, it gives each subscription operation a feed;
//  2. the resolver (usageStats) hands the feed the hub's channel, and returns gqlgen a
//     channel of the feed's own that holds nothing until step 3 puts a message in;
//  3. per message, the wrapped response handler takes the next message from the hub and
//     asks it (live.Stats.Memo) for the rendering for this request; only the first
//     subscriber to ask renders, with renderUsageStats (statsjson.go), which writes what
//     gqlgen's execution would, or where that declines, by putting the message in
//     gqlgen's channel and letting gqlgen execute as usual; then it encodes the response
//     once;
//  4. on a graphql-transport-ws connection the handler writes the protocol message itself
//     around those bytes and goes on to the next message; gqlgen only sees the
//     subscription end. Elsewhere (the legacy graphql-ws protocol) it returns the shared
//     response for gqlgen to send.
//
// The rendering depends only on the message and the request: authorization happened when
// the subscription started, and the UsageStats types have no per-viewer fields (no
// resolvers, no @hasRole). A field whose value depended on the viewer would be served to
// every subscriber of the filter: add the viewer to requestKey before adding one.
//
// The GraphQL operation metrics (Options.ObserveOperation) count renderings, not the
// messages sent: gqlgen's response middleware counts those gqlgen makes, and record
// those of renderUsageStats.
type shareRenders struct {
	record func(name, opType string, d time.Duration, failed bool) // may be nil
}

// aroundOperations is the operation middleware.
func (s shareRenders) aroundOperations(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	key, ok := requestKey(oc)
	if !ok {
		return next(ctx)
	}
	f := &feed{key: key}
	handle := next(context.WithValue(ctx, feedKey{}, f))
	direct := directTarget(ctx, oc)
	return func(ctx context.Context) *graphql.Response {
		if f.src == nil { // not a usageStats subscription, or it failed to start
			return handle(ctx)
		}
		for {
			var st *live.Stats
			select {
			case next, ok := <-f.src:
				if !ok {
					return nil // the hub ended the subscription
				}
				st = next
			case <-ctx.Done():
				return nil
			}
			if ctx.Err() != nil { // both were ready: the client completed the subscription
				return nil
			}
			render := func() *graphql.Response {
				select { // a rendering that ended early may have left its message unread
				case <-f.out:
				default:
				}
				f.out <- st
				return handle(ctx)
			}
			r, _ := st.Memo(f.key, func() any {
				if data, ok := renderUsageStats(oc, st); ok {
					if s.record != nil {
						s.record(oc.OperationName, string(ast.Subscription), time.Since(oc.Stats.OperationStart), false)
					}
					return renderingOf(data)
				}
				return newRendering(render())
			}).(*rendering)
			switch {
			case r == nil: // this subscriber rendered, and gqlgen produced nothing: it ended
				return nil
			case direct == nil || r.payload == nil:
				return r.resp
			}
			if err := direct.send(r.payload); err != nil {
				// Too slow (or gone): close the connection rather than complete the
				// subscription, which would tell the client it ended normally and leave
				// its dashboard frozen; a closed connection makes it reconnect.
				direct.conn.closeWith(int(websocket.StatusTryAgainLater), "Too slow")
				return nil
			}
		}
	}
}

// rendering is one message rendered for one request.
type rendering struct {
	resp    *graphql.Response
	payload []byte // resp encoded: the protocol message's payload; nil if it cannot be
}

// newRendering detaches resp (gqlgen's Data aliases a buffer the renderer's next message
// reuses) and encodes it once for every subscriber.
func newRendering(resp *graphql.Response) any {
	if resp == nil {
		return nil
	}
	cp := *resp
	cp.Data = bytes.Clone(resp.Data)
	payload, err := json.Marshal(&cp)
	if err != nil {
		payload = nil
	}
	return &rendering{resp: &cp, payload: payload}
}

// renderingOf is newRendering for data renderUsageStats wrote: the payload is what
// json.Marshal makes of a response carrying data (which is compact already, so only
// HTML characters are escaped), built in one buffer that the response's data aliases.
func renderingOf(data []byte) *rendering {
	const head = `{"data":`
	var b bytes.Buffer
	b.Grow(len(head) + len(data) + len(data)/8 + 1)
	b.WriteString(head)
	json.HTMLEscape(&b, data)
	b.WriteByte('}')
	payload := b.Bytes()
	// Capped, so that nothing appended to the data can overwrite the payload's end.
	data = payload[len(head) : len(payload)-1 : len(payload)-1]
	return &rendering{resp: &graphql.Response{Data: data}, payload: payload}
}

var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// directWriter writes one subscription's messages to its connection.
type directWriter struct {
	conn   *protocolConn
	prefix []byte // {"id":…,"type":"next","payload":
}

// send writes a graphql-transport-ws "next" message with an encoded payload:
// {"id":…,"type":"next","payload":…}, what gqlgen itself would send.
func (d *directWriter) send(payload []byte) error {
	b := framePool.Get().(*bytes.Buffer)
	defer framePool.Put(b)
	b.Reset()
	b.Write(d.prefix)
	b.Write(payload)
	b.WriteByte('}')
	// Not bound to the subscription's context: coder/websocket closes the whole
	// connection, without a close frame, when a write's context ends during the write,
	// and the subscription's ends whenever the client completes it or the guard closes
	// with a protocol code. The connection bounds a stuck write itself (coderConn.write).
	return d.conn.writeText(b.Bytes())
}

// directTarget returns the writer of an operation's messages, or nil when gqlgen must
// send them (not graphql-transport-ws, or the id is unknown).
func directTarget(ctx context.Context, oc *graphql.OperationContext) *directWriter {
	id, _ := oc.Extensions[subscriptionIDKey].(string)
	slot, _ := ctx.Value(guardSlotKey{}).(*guardSlot)
	if id == "" || slot == nil || slot.conn == nil || slot.conn.Subprotocol() != transportWS || !slot.conn.canWriteText() {
		return nil
	}
	quoted, err := json.Marshal(id)
	if err != nil {
		return nil
	}
	prefix := append([]byte(`{"id":`), quoted...)
	return &directWriter{conn: slot.conn, prefix: append(prefix, `,"type":"next","payload":`...)}
}

// subscriptionIDKey is the operation extension that carries a websocket operation's id
// from subscriptionIDs to shareRenders. Only the server sets it.
const subscriptionIDKey = "agentregistry.subscriptionID"

// subscriptionIDs records each websocket operation's id in its extensions. gqlgen does
// not pass the id to the operation; this parameter mutator runs while gqlgen creates the
// operation, which it does before reading the connection's next message, so the id the
// guard saw last is this operation's (protocolConn.takeSubscribing).
type subscriptionIDs struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = subscriptionIDs{}

func (subscriptionIDs) ExtensionName() string                   { return "SubscriptionIDs" }
func (subscriptionIDs) Validate(graphql.ExecutableSchema) error { return nil }

func (subscriptionIDs) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	// Never the client's. (Only graphql-transport-ws operations are written directly, and
	// there the guard's id overwrites any other; this keeps it so if that changes.)
	delete(p.Extensions, subscriptionIDKey)
	slot, _ := ctx.Value(guardSlotKey{}).(*guardSlot)
	if slot == nil || slot.conn == nil {
		return nil
	}
	if id := slot.conn.takeSubscribing(); id != "" {
		if p.Extensions == nil {
			p.Extensions = map[string]any{}
		}
		p.Extensions[subscriptionIDKey] = id
	}
	return nil
}

type feedKey struct{}

// feed connects one subscription's resolver to its wrapped response handler.
type feed struct {
	key string
	src <-chan *live.Stats // the hub's messages; set by the resolver
	out chan *live.Stats   // what gqlgen reads, one message per rendering
}

// feedFrom is called by a subscription resolver with the hub's channel. Under
// shareRenders it returns the channel gqlgen should read instead; otherwise src itself.
// The feed is written here, before gqlgen starts asking for responses, and read only by
// the response handler afterwards.
func feedFrom(ctx context.Context, src <-chan *live.Stats) <-chan *live.Stats {
	f, ok := ctx.Value(feedKey{}).(*feed)
	if !ok || f.src != nil {
		return src
	}
	f.src, f.out = src, make(chan *live.Stats, 1)
	return f.out
}

// requestKey identifies what a subscriber asked for: two subscribers with the same key get
// byte-identical renderings of a message. It reports false when the variables cannot be
// encoded, and then the subscription renders its own messages.
func requestKey(oc *graphql.OperationContext) (string, bool) {
	vars, err := json.Marshal(oc.Variables) // map keys come out sorted
	if err != nil {
		return "", false
	}
	var b bytes.Buffer
	b.Grow(len(oc.RawQuery) + len(oc.OperationName) + len(vars) + 2)
	b.WriteString(oc.RawQuery)
	b.WriteByte(0)
	b.WriteString(oc.OperationName)
	b.WriteByte(0)
	b.Write(vars)
	return b.String(), true
}
