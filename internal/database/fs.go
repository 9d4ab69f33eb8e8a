package database

import (
	"fmt"
	"io/fs"
)

// migrationFS is the migrations directory as goose expects it (files at the root).
func migrationFS() (fs.FS, error) {
	sub, err := fs.Sub(Migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("database: migrations directory: %w", err)
	}
	return sub, nil
}
