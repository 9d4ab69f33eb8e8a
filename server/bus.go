package server

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/pubsub"
)

// busQueueSize bounds each bus subscription's queue. The live-usage hub receives every
// committed batch; a burst beyond the queue is dropped and costs every dashboard a
// reload from the database, so it is sized for bursts (about 100,000 events).
const busQueueSize = 4096

// newBus picks the bus replicas share: Redis when REDIS_URL is set, PostgreSQL
// LISTEN/NOTIFY when the database is PostgreSQL (no extra infrastructure), and an
// in-process bus for single-instance SQLite.
func newBus(cfg Config, db *database.DB, rdb *redis.Client, logger *slog.Logger) (pubsub.Bus, error) {
	switch {
	case rdb != nil:
		bus, err := pubsub.NewRedis(rdb, pubsub.RedisOptions{Logger: logger, QueueSize: busQueueSize})
		if err != nil {
			return nil, fmt.Errorf("redis bus: %w", err)
		}
		return bus, nil
	case db.Driver == database.DriverPostgres:
		bus, err := pubsub.NewPostgres(cfg.DatabaseDSN(), pubsub.PostgresOptions{Logger: logger, DB: db.SQL, QueueSize: busQueueSize})
		if err != nil {
			return nil, fmt.Errorf("postgres bus: %w", err)
		}
		return bus, nil
	default:
		return pubsub.NewMemory(), nil
	}
}

// newRedis returns a client for REDIS_URL, or nil when it is empty. Timeouts are short:
// a limiter that waits seconds for Redis is worse than one that fails open (or closed).
func newRedis(cfg Config) (*redis.Client, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 500*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	return redis.NewClient(opts), nil
}
