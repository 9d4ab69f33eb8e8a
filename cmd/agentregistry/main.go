// Command agentregistry is the control plane of the agent marketplace: the portal's
// GraphQL API, the invoke gateway, the webhook receivers and the widget host, in one
// binary. Subcommands: serve [--dev] | migrate | seed | keys | version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/gsvdev/agentregistry/server"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agentregistry:", err)
		os.Exit(1)
	}
}

const usage = `usage: agentregistry <command> [flags]

commands:
  serve [--dev]   run the service (--dev: SQLite, local token issuer, demo data)
  migrate         apply database migrations (a second run changes nothing)
  seed            write the demo tenants, agent, plan, subscription and config
  keys            create or revoke API keys (agentregistry keys -h)
  version         print the version
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dev := fs.Bool("dev", false, "dev mode: SQLite, a local token issuer, demo data (loopback only)")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if *dev {
			getenv = server.OverrideEnv(getenv, map[string]string{"DEV": "true"})
		}
		cfg, logger, err := load(getenv, stderr)
		if err != nil {
			return err
		}
		ctx, stop := server.SignalContext(ctx)
		defer stop()
		srv, err := server.New(ctx, cfg, logger)
		if err != nil {
			return err
		}
		srv.PrintBanner(stdout)
		return srv.Run(ctx)
	case "migrate":
		cfg, _, err := load(getenv, stderr)
		if err != nil {
			return err
		}
		return server.Migrate(ctx, cfg, stdout)
	case "seed":
		cfg, _, err := load(getenv, stderr)
		if err != nil {
			return err
		}
		return server.Seed(ctx, cfg, stdout)
	case "keys":
		return keysCommand(ctx, rest, getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func load(getenv func(string) string, stderr io.Writer) (server.Config, *slog.Logger, error) {
	cfg, err := server.LoadConfig(getenv)
	if err != nil {
		return cfg, nil, fmt.Errorf("configuration:\n%w", err)
	}
	logger := server.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	logger.Info("configuration", "config", cfg)
	return cfg, logger, nil
}
