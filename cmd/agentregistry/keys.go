package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/server"
)

const keysUsage = `usage:
  agentregistry keys create --config CONFIG_ID --name NAME [--kind secret|publishable] [--scopes invoke,usage:read] [--ttl 8760h]
  agentregistry keys revoke --id KEY_ID
  agentregistry keys rotate --id KEY_ID [--grace 24h]
`

// keysCommand is the operators' way to mint and revoke keys outside the portal. The new
// secret is printed once, on stdout, and nowhere else.
func keysCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return errors.New("keys: no subcommand")
	}
	// The subcommand is checked before anything is loaded: `keys -h` needs no database.
	switch args[0] {
	case "create", "revoke", "rotate":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, keysUsage)
		return nil
	default:
		fmt.Fprint(stderr, keysUsage)
		return fmt.Errorf("keys: unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	configID := fs.String("config", "", "config id the key may invoke")
	name := fs.String("name", "", "display name of the key")
	kind := fs.String("kind", "secret", "secret or publishable")
	scopes := fs.String("scopes", "", "comma-separated scopes (default: invoke, or widget:invoke for publishable)")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "lifetime of the key")
	id := fs.String("id", "", "key id")
	grace := fs.Duration("grace", 24*time.Hour, "how long the old key keeps working after a rotation")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, _, err := load(getenv, stderr)
	if err != nil {
		return err
	}
	svc, closeFn, err := server.OpenKeys(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	sys := auth.SystemContext(ctx) // an operator with database access acts for the platform
	switch args[0] {
	case "create":
		cid, err := pulid.Parse(*configID)
		if err != nil || *name == "" {
			return errors.New("keys create: --config (a config id) and --name are required")
		}
		var sc []apikey.Scope
		for _, s := range strings.Split(*scopes, ",") {
			if s = strings.TrimSpace(s); s != "" {
				p, err := apikey.ParseScope(s)
				if err != nil {
					return fmt.Errorf("keys create: %w", err)
				}
				sc = append(sc, p)
			}
		}
		expires := time.Now().Add(*ttl)
		created, err := svc.Create(sys, keys.CreateParams{ConfigID: cid, Name: *name, Kind: apikey.Kind(*kind), Scopes: sc, ExpiresAt: &expires, CreatedBy: "cli"})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key id: %s\nkey: %s\n", created.Key.ID, created.Secret)
		return nil
	case "revoke":
		kid, err := pulid.Parse(*id)
		if err != nil {
			return errors.New("keys revoke: --id (a key id) is required")
		}
		if _, err := svc.Revoke(sys, kid); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", kid)
		return nil
	case "rotate":
		kid, err := pulid.Parse(*id)
		if err != nil {
			return errors.New("keys rotate: --id (a key id) is required")
		}
		created, err := svc.Rotate(sys, kid, *grace, "cli")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key id: %s\nkey: %s\nold key %s stops working at %s\n", created.Key.ID, created.Secret, kid, time.Now().Add(*grace).UTC().Format(time.RFC3339))
		return nil
	default:
		fmt.Fprint(stderr, keysUsage)
		return fmt.Errorf("keys: unknown subcommand %q", args[0])
	}
}
