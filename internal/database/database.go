// Package database opens the service's store (embedded SQLite by default, PostgreSQL
// through lib/pq in production), applies its schema, and hands out the ent client.
//
// PostgreSQL's schema changes are versioned SQL files (migrations/, applied with goose
// under an advisory lock, so replicas starting together do not race). The dev SQLite
// file is auto-migrated by ent: it is disposable and has no deploy step.
package database

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/lib/pq" // PostgreSQL driver "postgres"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"

	"github.com/gsvdev/agentregistry/ent"
	_ "github.com/gsvdev/agentregistry/ent/runtime" // hooks, policies and defaults
)

// Migrations holds the versioned PostgreSQL migrations, applied in file-name order.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Drivers by database/sql name.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Options tune the connection pool.
type Options struct {
	MaxOpenConns int
	MaxIdleConns int
	// Debug logs every statement through the given function (tests, never production).
	Debug func(...any)
}

// DB is an open store.
type DB struct {
	SQL     *sql.DB
	Driver  string // DriverSQLite or DriverPostgres
	Dialect string // ent's dialect name
	Client  *ent.Client
}

// Open connects to the database named by driver and dsn and verifies it answers.
func Open(ctx context.Context, driver, dsn string, opts Options) (*DB, error) {
	var d string
	switch driver {
	case DriverSQLite:
		d = dialect.SQLite
		var err error
		if dsn, err = sqliteDSN(dsn); err != nil {
			return nil, err
		}
	case DriverPostgres:
		d = dialect.Postgres
	default:
		return nil, fmt.Errorf("database: unknown driver %q", driver)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("database: open %s: %w", driver, err)
	}
	if opts.MaxOpenConns > 0 {
		db.SetMaxOpenConns(opts.MaxOpenConns)
	}
	if opts.MaxIdleConns > 0 {
		db.SetMaxIdleConns(opts.MaxIdleConns)
	}
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database: connect to %s: %w", driver, err)
	}
	var drv dialect.Driver = entsql.OpenDB(d, db)
	if opts.Debug != nil {
		drv = dialect.DebugWithContext(drv, func(_ context.Context, a ...any) { opts.Debug(a...) })
	}
	return &DB{SQL: db, Driver: driver, Dialect: d, Client: ent.NewClient(ent.Driver(drv))}, nil
}

// sqliteDSN turns a file: URI into one with the pragmas the service relies on: foreign
// keys (ent's cascades), WAL (readers do not block the writer), a busy timeout (writers
// wait instead of failing) and immediate transactions (no lock-upgrade deadlocks). It
// also creates the file's directory.
func sqliteDSN(dsn string) (string, error) {
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if path != "" && path != ":memory:" && !strings.HasPrefix(path, ":") {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return "", fmt.Errorf("database: create directory for %s: %w", path, err)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("database: sqlite options: %w", err)
	}
	for _, p := range []string{"foreign_keys(1)", "journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode(), nil
}

// Close closes the client and the pool.
func (db *DB) Close() error { return db.Client.Close() }

// Ping reports whether the database answers (readiness).
func (db *DB) Ping(ctx context.Context) error { return db.SQL.PingContext(ctx) }

// Migrate brings the schema up to date: versioned migrations on PostgreSQL, ent's
// auto-migration on SQLite. Running it again is a no-op.
func (db *DB) Migrate(ctx context.Context) error {
	if db.Driver == DriverSQLite {
		if err := db.Client.Schema.Create(ctx); err != nil {
			return fmt.Errorf("database: migrate sqlite: %w", err)
		}
		return nil
	}
	p, err := db.migrator()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("database: migrate: %w", err)
	}
	return nil
}

// MigrationStatus returns the applied and the latest migration versions (PostgreSQL).
func (db *DB) MigrationStatus(ctx context.Context) (current, latest int64, err error) {
	if db.Driver == DriverSQLite {
		return 0, 0, nil
	}
	p, err := db.migrator()
	if err != nil {
		return 0, 0, err
	}
	if current, err = p.GetDBVersion(ctx); err != nil {
		return 0, 0, fmt.Errorf("database: migration version: %w", err)
	}
	sources := p.ListSources()
	if len(sources) > 0 {
		latest = sources[len(sources)-1].Version
	}
	return current, latest, nil
}

func (db *DB) migrator() (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("database: migration lock: %w", err)
	}
	fsys, err := migrationFS()
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db.SQL, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("database: migrations: %w", err)
	}
	return p, nil
}
