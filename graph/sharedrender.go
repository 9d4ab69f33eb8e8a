package graph

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// The usageStats subscription sends one message to every subscriber of a filter: the hub
// builds a live.Stats per filter and hands the same pointer to each. gqlgen would still
// render it once per subscriber (execute the selection, marshal the lists), which at
// thousands of subscribers is most of the process's work. shareRenders makes the
// subscribers that sent the same request (document, operation name and variables)
// share one rendering per message:
//
//  1. as the operation middleware, it gives each subscription operation a feed;
//  2. the resolver (usageStats) hands the feed the hub's channel, and returns gqlgen a
//     channel of the feed's own that holds nothing until step 3 puts a message in;
//  3. per message, the wrapped response handler takes the next message from the hub and
//     asks it (live.Stats.Memo) for the response rendered for this request; only the
//     first subscriber to ask renders, by putting the message in gqlgen's channel and
//     letting gqlgen execute as usual. The others send the same response.
//
// The rendering depends only on the message and the request: authorization happened when
// the subscription started, and the UsageStats types have no per-viewer fields.
func shareRenders(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
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
	return func(ctx context.Context) *graphql.Response {
		if f.src == nil { // not a usageStats subscription, or it failed to start
			return handle(ctx)
		}
		var st *live.Stats
		select {
		case s, ok := <-f.src:
			if !ok {
				return nil // the hub ended the subscription
			}
			st = s
		case <-ctx.Done():
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
		if resp, _ := st.Memo(f.key, func() any { return detach(render()) }).(*graphql.Response); resp != nil {
			return resp
		}
		// The first renderer got nothing (its context ended, or it panicked).
		return render()
	}
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

// detach copies resp so that it can be shared: gqlgen's Data aliases a buffer the
// renderer's next message reuses.
func detach(resp *graphql.Response) *graphql.Response {
	if resp == nil {
		return nil
	}
	cp := *resp
	cp.Data = bytes.Clone(resp.Data)
	return &cp
}
