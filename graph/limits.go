package graph

import (
	"context"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

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
