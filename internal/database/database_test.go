package database_test

import (
	"context"
	"testing"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// A fresh database, migrated, then migrated again: the second run changes nothing, the
// checked-in migrations produce exactly ent/schema (no change is missing its migration),
// and the app's client works on the result.
func TestMigrateTwiceIsNoOpAndMatchesSchema(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			db := dbtest.Open(t, driver) // migrates once
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("second migrate: %v", err)
			}
			if driver == database.DriverPostgres {
				current, latest, err := db.MigrationStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if current != latest || latest == 0 {
					t.Fatalf("migration version = %d, latest = %d", current, latest)
				}
			}
			pending, err := database.PendingSchemaChanges(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if pending != "" {
				t.Fatalf("ent/schema differs from the migrated database; run `make migration name=...`:\n%s", pending)
			}
			sys := auth.SystemContext(ctx)
			tn, err := db.Client.Tenant.Create().SetName("Acme").SetSlug("acme").Save(sys)
			if err != nil {
				t.Fatalf("write on migrated database: %v", err)
			}
			if got := db.Client.Tenant.GetX(sys, tn.ID); got.Slug != "acme" {
				t.Fatalf("read back %q", got.Slug)
			}
		})
	}
}

// Concurrent starts of several replicas must not race on the migration table.
func TestConcurrentMigrate(t *testing.T) {
	url := dbtest.PostgresURL(t)
	ctx := context.Background()
	dsn, drop, err := dbtest.CreatePostgresDatabase(ctx, url, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			db, err := database.Open(ctx, database.DriverPostgres, dsn, database.Options{})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(ctx)
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
}
