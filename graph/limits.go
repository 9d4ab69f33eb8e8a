package graph

import (
	"context"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// minExpandedFields is the least bound on the fields an operation may name once its
// fragment spreads are replaced by their fragments. gqlgen's complexity limit and
// selectionDepth walk the expanded operation, and a fragment that spreads another twice
// doubles it: 40 such fragments, a 2 KB request, were 2^40 steps of CPU. Within this
// bound (far above any real query) those walks stay cheap.
const minExpandedFields = 20_000

// expansionLimit refuses an operation that expands to more than max fields (the larger
// of minExpandedFields and the complexity limit, which the expanded fields never exceed
// with gqlgen's default complexity), counting in time linear in the document: each
// fragment is counted once.
type expansionLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = expansionLimit{}

func (expansionLimit) ExtensionName() string                   { return "ExpansionLimit" }
func (expansionLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (e expansionLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if expandedFields(oc.Operation.SelectionSet, oc.Doc.Fragments, map[string]int{}, e.max) > e.max {
		err := gqlerror.Errorf("operation expands to more than %d fields once its fragments are spread", e.max)
		err.Extensions = map[string]any{"code": "COMPLEXITY_LIMIT_EXCEEDED"}
		return err
	}
	return nil
}

// expandedFields counts the fields of set with its fragment spreads replaced by their
// fragments, up to limit+1 (a count above limit is reported as limit+1). memo holds each
// fragment's count, so every fragment is counted once however often it is spread.
func expandedFields(set ast.SelectionSet, frags ast.FragmentDefinitionList, memo map[string]int, limit int) int {
	n := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			n += 1 + expandedFields(s.SelectionSet, frags, memo, limit)
		case *ast.InlineFragment:
			n += expandedFields(s.SelectionSet, frags, memo, limit)
		case *ast.FragmentSpread:
			c, ok := memo[s.Name]
			if !ok {
				// Cycles are invalid GraphQL and rejected by validation first; counting
				// one as too many guards anyway.
				memo[s.Name] = limit + 1
				if f := frags.ForName(s.Name); f != nil {
					c = expandedFields(f.SelectionSet, frags, memo, limit)
				}
				memo[s.Name] = c
			}
			n += c
		}
		if n > limit {
			return limit + 1
		}
	}
	return n
}

// depthLimit rejects operations nested deeper than max before any resolver runs.
// gqlgen limits complexity but not depth; a deep query through cyclic edges (agent ->
// subscriptions -> agent -> ...) is cheap to write and expensive to run.
type depthLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (d depthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet, oc.Doc.Fragments, 0, map[string]bool{}); depth > d.max {
		err := gqlerror.Errorf("operation is nested %d levels deep; the limit is %d", depth, d.max)
		err.Extensions = map[string]any{"code": "DEPTH_LIMIT_EXCEEDED"}
		return err
	}
	return nil
}

// selectionDepth returns the deepest field nesting of set. Fragment cycles are invalid
// GraphQL and rejected by validation first; seen guards anyway.
func selectionDepth(set ast.SelectionSet, frags ast.FragmentDefinitionList, depth int, seen map[string]bool) int {
	deepest := depth
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if len(s.SelectionSet) == 0 {
				d = depth + 1
			} else {
				d = selectionDepth(s.SelectionSet, frags, depth+1, seen)
			}
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, frags, depth, seen)
		case *ast.FragmentSpread:
			if seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			if f := frags.ForName(s.Name); f != nil {
				d = selectionDepth(f.SelectionSet, frags, depth, seen)
			}
			delete(seen, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// capPageSize bounds every Relay connection and nodes(ids:): first/last above max is BAD_USER_INPUT,
// and a connection asked for with neither gets the first max rows instead of all.
func capPageSize(max int) graphql.FieldMiddleware {
	return func(ctx context.Context, next graphql.Resolver) (any, error) {
		fc := graphql.GetFieldContext(ctx)
		if fc == nil || fc.Args == nil {
			return next(ctx)
		}
		if ids, ok := fc.Args["ids"].([]pulid.ID); ok && len(ids) > max {
			return nil, &Error{Code: CodeBadUserInput, Message: fmt.Sprintf("at most %d ids per request", max), Field: "ids"}
		}
		first, hasFirst := fc.Args["first"]
		last, hasLast := fc.Args["last"]
		if !hasFirst && !hasLast {
			return next(ctx)
		}
		f, _ := first.(*int)
		l, _ := last.(*int)
		for name, v := range map[string]*int{"first": f, "last": l} {
			if v != nil && (*v < 0 || *v > max) {
				return nil, &Error{Code: CodeBadUserInput, Message: fmt.Sprintf("%s must be between 0 and %d", name, max), Field: name}
			}
		}
		if f == nil && l == nil {
			n := max
			fc.Args["first"] = &n
		}
		return next(ctx)
	}
}
