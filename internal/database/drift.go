package database

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// PendingSchemaChanges returns the SQL that ent would run to bring db to ent/schema, or
// "" when the database already matches. On a database migrated with the checked-in
// migrations it must be "": otherwise a schema change is missing its migration.
func PendingSchemaChanges(ctx context.Context, db *DB) (string, error) {
	var buf bytes.Buffer
	if err := db.Client.Schema.WriteTo(ctx, &buf); err != nil {
		return "", fmt.Errorf("database: diff schema: %w", err)
	}
	var stmts []string
	for _, line := range strings.Split(buf.String(), "\n") {
		l := strings.TrimSpace(line)
		// WriteTo wraps its statements in a transaction; goose brings its own.
		if l == "" || l == "BEGIN;" || l == "COMMIT;" {
			continue
		}
		stmts = append(stmts, l)
	}
	return strings.Join(stmts, "\n"), nil
}
