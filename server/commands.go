package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/seed"
)

// Migrate applies the schema migrations and reports the version reached. Running it
// twice is a no-op.
func Migrate(ctx context.Context, cfg Config, out io.Writer) error {
	db, err := database.Open(ctx, cfg.DatabaseDriver(), cfg.DatabaseDSN(), database.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	current, _, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if db.Driver == database.DriverSQLite {
		fmt.Fprintln(out, "sqlite schema is up to date")
		return nil
	}
	fmt.Fprintf(out, "database schema at version %d\n", current)
	return nil
}

// Seed writes the demo tenants, agent, plan, subscription and config (idempotent).
func Seed(ctx context.Context, cfg Config, out io.Writer) error {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := seed.Demo(auth.SystemContext(ctx), db.Client)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo provider tenant: %s\ndemo buyer tenant: %s\ndemo config id: %s\n", res.ProviderTenant, res.BuyerTenant, res.Config)
	return nil
}

// OpenKeys opens the database and the key service for the keys subcommand. The returned
// function closes the database.
func OpenKeys(ctx context.Context, cfg Config) (*keys.Service, func() error, error) {
	signing := cfg.APIKeySigningKeys
	if len(signing) == 0 && cfg.Dev {
		secret, err := loadOrCreateSecret(devSecretPath(cfg))
		if err != nil {
			return nil, nil, err
		}
		signing = []SigningKey{{ID: "dev", Secret: Secret(secret)}}
	}
	kr, err := newKeyring(signing, cfg.APIKeyIssuer)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	// Revocations from the CLI reach running servers through the same bus they share.
	rdb, err := newRedis(cfg)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	bus, err := newBus(cfg, db, rdb, slog.New(slog.DiscardHandler))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	rev, stop := keys.NewRevocations(bus, noCache{}, slog.New(slog.DiscardHandler))
	closeAll := func() error {
		stop()
		err := bus.Close()
		if rdb != nil {
			err = errors.Join(err, rdb.Close())
		}
		return errors.Join(err, db.Close())
	}
	return keys.New(db.Client, kr, rev), closeAll, nil
}

// noCache is the CLI's key cache: it has none, it only tells the servers.
type noCache struct{}

func (noCache) Invalidate(string) {}
func (noCache) InvalidateAll()    {}
