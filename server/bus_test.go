package server

import (
	"log/slog"
	"os"
	"testing"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/pubsub"
)

// Replicas reach each other through Redis when REDIS_URL is set, through PostgreSQL's
// LISTEN/NOTIFY when they share PostgreSQL without Redis, and a single SQLite instance
// keeps its events in the process. The replica tests pass over either shared bus, so
// this one pins which bus each configuration gets.
func TestNewBusFollowsConfiguration(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	pg := dbtest.Open(t, database.DriverPostgres)
	pgCfg, err := LoadConfig(prodEnv(map[string]string{"DATABASE_URL": dbtest.PostgresURL(t)}))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sqlite: in process", func(t *testing.T) {
		bus, err := newBus(Config{}, dbtest.Open(t, database.DriverSQLite), nil, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		if _, ok := bus.(*pubsub.Memory); !ok {
			t.Fatalf("got %T, want *pubsub.Memory", bus)
		}
	})
	t.Run("postgres without redis: LISTEN/NOTIFY", func(t *testing.T) {
		bus, err := newBus(pgCfg, pg, nil, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		if _, ok := bus.(*pubsub.Postgres); !ok {
			t.Fatalf("got %T, want *pubsub.Postgres", bus)
		}
	})
	t.Run("REDIS_URL set: redis, even on postgres", func(t *testing.T) {
		url := os.Getenv("TEST_REDIS_URL")
		if url == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("CI=true but TEST_REDIS_URL is not set")
			}
			t.Skip("TEST_REDIS_URL is not set")
		}
		cfg := pgCfg
		cfg.RedisURL = url
		rdb, err := newRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		bus, err := newBus(cfg, pg, rdb, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		if _, ok := bus.(*pubsub.Redis); !ok {
			t.Fatalf("got %T, want *pubsub.Redis", bus)
		}
	})
}
