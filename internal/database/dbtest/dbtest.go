// Package dbtest gives each test its own database: a temporary SQLite file, and when
// TEST_DATABASE_URL is set a fresh PostgreSQL database migrated with the checked-in
// migrations (so every PostgreSQL test also tests them) and dropped afterwards. Packages
// run in parallel safely: no two tests share a database.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/internal/database"
)

// Drivers returns the databases the calling test must run on: SQLite always, PostgreSQL
// when TEST_DATABASE_URL is set. Under CI=true a missing TEST_DATABASE_URL fails the
// test instead of quietly testing less.
func Drivers(t testing.TB) []string {
	t.Helper()
	drivers := []string{database.DriverSQLite}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		drivers = append(drivers, database.DriverPostgres)
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests cannot run")
	}
	return drivers
}

// PostgresURL returns TEST_DATABASE_URL, skipping (or failing under CI) when unset.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but TEST_DATABASE_URL is not set")
		}
		t.Skip("TEST_DATABASE_URL not set")
	}
	return u
}

// Open returns a migrated, empty database of the given driver, closed (and dropped) when
// the test ends. opts may carry a statement counter (see Counter).
func Open(t testing.TB, driver string, opts ...Option) *database.DB {
	t.Helper()
	ctx := context.Background()
	var dsn string
	switch driver {
	case database.DriverSQLite:
		dsn = "file:" + filepath.Join(t.TempDir(), "test.db")
	case database.DriverPostgres:
		var drop func()
		var err error
		dsn, drop, err = CreatePostgresDatabase(ctx, PostgresURL(t), "t")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(drop)
	default:
		t.Fatalf("dbtest: unknown driver %q", driver)
	}
	db, err := database.Open(ctx, driver, dsn, database.Options{MaxOpenConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		t.Fatal(err)
	}
	for _, o := range opts {
		o(db)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Option adjusts a test database after it is opened.
type Option func(*database.DB)

// WithCounter routes the client's statements through c.
func WithCounter(c *Counter) Option {
	return func(db *database.DB) {
		db.Client = ent.NewClient(ent.Driver(&countingDriver{Driver: entsql.OpenDB(db.Dialect, db.SQL), c: c}))
	}
}

// CreatePostgresDatabase creates an empty database on the server at serverURL and returns
// its URL and a function that drops it.
func CreatePostgresDatabase(ctx context.Context, serverURL, prefix string) (string, func(), error) {
	admin, err := sql.Open("postgres", serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("dbtest: open %s: %w", redact(serverURL), err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s_%s_%s", prefix, time.Now().UTC().Format("150405"), hex.EncodeToString(b))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("dbtest: create database (is PostgreSQL running at %s?): %w", redact(serverURL), err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("dbtest: parse url: %w", err)
	}
	u.Path = "/" + name
	drop := func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	}
	return u.String(), drop, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// Counter counts the statements a client sends: the guard that a list stays a fixed
// number of queries however many rows it has (no N+1).
type Counter struct{ n atomic.Int64 }

// Reset sets the count to zero.
func (c *Counter) Reset() { c.n.Store(0) }

// Count returns the statements counted since the last Reset.
func (c *Counter) Count() int { return int(c.n.Load()) }

type countingDriver struct {
	dialect.Driver
	c *Counter
}

func (d *countingDriver) Query(ctx context.Context, query string, args, v any) error {
	d.c.n.Add(1)
	return d.Driver.Query(ctx, query, args, v)
}

func (d *countingDriver) Exec(ctx context.Context, query string, args, v any) error {
	d.c.n.Add(1)
	return d.Driver.Exec(ctx, query, args, v)
}

func (d *countingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	return &countingTx{Tx: tx, c: d.c}, nil
}

type countingTx struct {
	dialect.Tx
	c *Counter
}

func (t *countingTx) Query(ctx context.Context, query string, args, v any) error {
	t.c.n.Add(1)
	return t.Tx.Query(ctx, query, args, v)
}

func (t *countingTx) Exec(ctx context.Context, query string, args, v any) error {
	t.c.n.Add(1)
	return t.Tx.Exec(ctx, query, args, v)
}
