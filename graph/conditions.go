package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// nullConditions refuses an operation whose @skip or @include condition is not a boolean
// once its variables are known. GraphQL lets a nullable variable with a default stand
// where Boolean! is expected, so validation passes `query($v: Boolean = true) { x
// @include(if: $v) }`; a client then sending {"v": null} made gqlgen panic while
// collecting fields, and the client's mistake came back as a 500.
type nullConditions struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = nullConditions{}

func (nullConditions) ExtensionName() string                   { return "NullConditions" }
func (nullConditions) Validate(graphql.ExecutableSchema) error { return nil }

func (nullConditions) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	var bad *gqlerror.Error
	walkSelections(oc.Operation.SelectionSet, oc.Doc.Fragments, map[string]bool{}, func(dirs ast.DirectiveList) bool {
		for _, d := range dirs {
			if d.Name != "skip" && d.Name != "include" {
				continue
			}
			arg := d.Arguments.ForName("if")
			if arg == nil || arg.Value == nil {
				continue // validation requires it; nothing to check
			}
			v, err := arg.Value.Value(oc.Variables)
			if _, ok := v.(bool); err != nil || !ok {
				bad = gqlerror.ErrorPosf(arg.Position, "the condition of @%s must be true or false, not null", d.Name)
				bad.Extensions = map[string]any{"code": CodeBadUserInput}
				return false
			}
		}
		return true
	})
	return bad
}

// walkSelections calls visit with the directives of every field, inline fragment and
// fragment spread under set, following spreads into their fragments, until visit returns
// false. Fragment cycles are invalid GraphQL and rejected by validation first; seen
// guards anyway.
func walkSelections(set ast.SelectionSet, frags ast.FragmentDefinitionList, seen map[string]bool, visit func(ast.DirectiveList) bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if !visit(s.Directives) || !walkSelections(s.SelectionSet, frags, seen, visit) {
				return false
			}
		case *ast.InlineFragment:
			if !visit(s.Directives) || !walkSelections(s.SelectionSet, frags, seen, visit) {
				return false
			}
		case *ast.FragmentSpread:
			if !visit(s.Directives) {
				return false
			}
			if seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			if f := frags.ForName(s.Name); f != nil && !walkSelections(f.SelectionSet, frags, seen, visit) {
				return false
			}
		}
	}
	return true
}
