package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/members"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/documents"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
	"github.com/gsvdev/agentregistry/internal/usage/live"
	"github.com/gsvdev/agentregistry/widget"
)

// Server is the whole service: one listener, one handler tree, and what must be drained
// on shutdown. Everything is built in New and passed down; nothing is global.
type Server struct {
	cfg       Config
	logger    *slog.Logger
	db        *database.DB
	metrics   *Metrics
	ln        net.Listener
	http      *http.Server
	auth      *auth.Authenticator
	keyring   *apikey.Keyring
	keys      *keys.Service
	documents *documents.Service
	dev       *devMode // nil outside --dev

	redis    *redis.Client // nil without REDIS_URL
	bus      pubsub.Bus
	verifier *apikey.Verifier
	recorder *usage.Recorder
	live     *live.Hub
	langflow *langflow.Client
	gateway  *gateway.Gateway
	resolver *gateway.EntResolver
	widget   *widget.Widget

	// drains run after the HTTP server has stopped (flush what requests left behind);
	// closers release clients at the very end; background work stops with bgCancel.
	drains   []func(context.Context) error
	closers  []func() error
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// New opens the database, checks its schema, builds every room and binds the listener
// (binding first lets dev mode know its own URL for the local issuer).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, logger: logger}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	if cfg.Dev {
		if err := requireLoopback(cfg.Addr); err != nil {
			return nil, err
		}
	}
	if !cfg.Dev && cfg.IsSQLite() {
		logger.Warn("running on SQLite outside dev mode: fine for a single small instance, not for replicas")
	}
	var err error
	s.db, err = openDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.db.Close()
		}
	}()
	s.metrics = NewMetrics(prometheus.NewRegistry())
	s.metrics.RegisterDB(s.db.SQL, "main")

	s.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer func() {
		if !ok {
			s.ln.Close()
			s.release()
		}
	}()

	authCfg := auth.Config{
		IssuerURL:   cfg.OIDCIssuer,
		ClientIDs:   cfg.OIDCClientIDs,
		RoleClient:  cfg.OIDCRoleClient,
		TenantClaim: cfg.OIDCTenantClaim,
		RoleNames: map[auth.Role]string{
			auth.RolePlatformAdmin: cfg.OIDCRoleAdmin,
			auth.RoleProvider:      cfg.OIDCRoleProvider,
			auth.RoleCustomer:      cfg.OIDCRoleCustomer,
		},
	}
	signing := cfg.APIKeySigningKeys
	if cfg.Dev {
		if s.dev, err = newDevMode(cfg, s.ln.Addr().String()); err != nil {
			return nil, err
		}
		authCfg.IssuerURL = s.dev.issuer.URL()
		if len(signing) == 0 {
			signing = []SigningKey{s.dev.signingKey}
		}
	}
	s.auth = auth.NewAuthenticator(authCfg, members.New(s.db.Client), logger)
	s.keyring, err = newKeyring(signing, cfg.APIKeyIssuer)
	if err != nil {
		return nil, err
	}
	s.keys = keys.New(s.db.Client, s.keyring, nil)
	s.documents = documents.New(s.db.Client)

	if s.dev != nil {
		if err := s.dev.seed(ctx, s.db.Client, s.keys, "http://"+s.ln.Addr().String()); err != nil {
			return nil, err
		}
	}

	if s.redis, err = newRedis(cfg); err != nil {
		return nil, err
	}
	if s.redis != nil {
		s.closers = append(s.closers, s.redis.Close)
	}
	if s.bus, err = newBus(cfg, s.db, s.redis, logger); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.bus.Close)
	if s.gateway, err = s.buildGateway(ctx, "http://"+s.ln.Addr().String()); err != nil {
		return nil, err
	}
	if s.widget, err = s.buildWidget(); err != nil {
		return nil, err
	}
	// The recorder drains after the HTTP server stops: every answered call is committed.
	s.drains = append(s.drains, s.recorder.Close)

	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ok = true
	return s, nil
}

// openDatabase connects and makes sure the schema is what this binary expects: migrated
// here when configured (and always for dev SQLite), refused when behind.
func openDatabase(ctx context.Context, cfg Config) (*database.DB, error) {
	db, err := database.Open(ctx, cfg.DatabaseDriver(), cfg.DatabaseDSN(), database.Options{
		MaxOpenConns: cfg.DBMaxOpenConns, MaxIdleConns: cfg.DBMaxIdleConns,
	})
	if err != nil {
		return nil, err
	}
	if cfg.AutoMigrate() {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	}
	current, latest, err := db.MigrationStatus(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if current < latest {
		db.Close()
		return nil, fmt.Errorf("database schema is at version %d, this binary needs %d: run `agentregistry migrate` (or set MIGRATE_ON_START=true)", current, latest)
	}
	return db, nil
}

func newKeyring(signing []SigningKey, issuer string) (*apikey.Keyring, error) {
	ks := make([]apikey.SigningKey, len(signing))
	for i, k := range signing {
		ks[i] = apikey.SigningKey{ID: k.ID, Secret: []byte(k.Secret.Reveal())}
	}
	kr, err := apikey.NewKeyring(ks, apikey.KeyringOptions{Issuer: issuer, Audience: issuer + "/gateway"})
	if err != nil {
		return nil, fmt.Errorf("APIKEY_SIGNING_KEYS: %w", err)
	}
	return kr, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the root handler (tests drive it without a listener).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// DB is the server's database (tests and subcommands).
func (s *Server) DB() *database.DB { return s.db }

// Keys is the API key service (the keys subcommand).
func (s *Server) Keys() *keys.Service { return s.keys }

// PrintBanner writes what a developer needs to try the service: URLs and, in dev mode,
// the credentials, each on its own line in the stable `dev <name>: <value>` form.
func (s *Server) PrintBanner(w io.Writer) {
	base := "http://" + s.Addr()
	fmt.Fprintf(w, "agentregistry listening on %s\n", base)
	if s.cfg.PlaygroundEnabled {
		fmt.Fprintf(w, "playground: %s/playground\n", base)
	}
	if s.dev != nil {
		s.dev.printCredentials(w, base)
	}
}

// Run serves until ctx is cancelled, then shuts down gracefully: in-flight requests
// finish within SHUTDOWN_TIMEOUT, then the drains run, then the database closes.
func (s *Server) Run(ctx context.Context) error {
	err := Serve(ctx, s.http, s.ln, s.cfg.ShutdownTimeout, s.logger, s.drains...)
	s.release()
	if cerr := s.db.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, fmt.Errorf("close database: %w", cerr))
	}
	return err
}

// background runs fn until the server stops.
func (s *Server) background(fn func(ctx context.Context)) {
	go fn(s.bgCtx)
}

// release stops background work and closes clients in the reverse order of their
// creation, like defers: the bus goes before the Redis client it uses (idempotent).
func (s *Server) release() {
	s.bgCancel()
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			s.logger.Warn("close", "error", err.Error())
		}
	}
	s.closers = nil
	if s.langflow != nil {
		s.langflow.Close()
	}
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ADDR: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("dev mode serves a local token issuer and must listen on a loopback address, not %q", addr)
}
