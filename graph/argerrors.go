package graph

import (
	"context"
	"fmt"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// argumentPath reports whether gqlErr is the failure to decode one of the field's
// arguments (a malformed cursor, time or id), and returns the argument's path such as
// "after" or "where.idIn[0]". Such errors are the client's: BAD_USER_INPUT, not INTERNAL.
func argumentPath(ctx context.Context, gqlErr *gqlerror.Error) (string, bool) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Args != nil || fc.Field.Field == nil {
		return "", false
	}
	base := len(fc.Path())
	if len(gqlErr.Path) <= base {
		return "", false
	}
	name, ok := gqlErr.Path[base].(ast.PathName)
	if !ok || fc.Field.Arguments.ForName(string(name)) == nil {
		return "", false
	}
	var b strings.Builder
	for i, el := range gqlErr.Path[base:] {
		switch v := el.(type) {
		case ast.PathName:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(string(v))
		case ast.PathIndex:
			fmt.Fprintf(&b, "[%d]", int(v))
		}
	}
	return b.String(), true
}
