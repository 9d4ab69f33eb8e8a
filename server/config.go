package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Secret holds a credential read from the environment. Its String, GoString,
// LogValue and MarshalText methods all redact, so a Secret cannot leak
// through fmt verbs, slog or JSON by accident; code that needs the value must
// call Reveal explicitly, which makes every use greppable.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value. Call it only where the credential is used.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString covers %#v, which bypasses String.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue redacts the secret in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts the secret in JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SigningKey is one API key signing secret. The ID (kid) is public: it is
// embedded in minted keys so verification can pick the right secret while
// old keys are still valid during a rotation.
type SigningKey struct {
	ID     string
	Secret Secret
}

// Config is the whole process configuration, read once from the environment
// at start. It is a plain value: no package keeps a copy of it.
type Config struct {
	Addr           string
	DatabaseURL    string
	Dev            bool
	LogLevel       string
	LogFormat      string
	MigrateOnStart bool

	OIDCIssuer       string
	OIDCClientIDs    []string
	OIDCRoleClient   string
	OIDCRoleAdmin    string
	OIDCRoleProvider string
	OIDCRoleCustomer string
	OIDCTenantClaim  string

	PlaygroundEnabled    bool
	IntrospectionEnabled bool
	CORSAllowedOrigins   []string
	MaxBodyBytes         int64

	GraphQLMaxComplexity int
	GraphQLMaxDepth      int
	GraphQLMaxPageSize   int

	WSInitTimeout                   time.Duration
	WSPingInterval                  time.Duration
	WSMaxSubscriptionsPerConnection int
	WSMaxConnectionsPerUser         int
	UsageStatsInterval              time.Duration

	ShutdownTimeout   time.Duration
	ReadHeaderTimeout time.Duration

	DBMaxOpenConns int
	DBMaxIdleConns int

	RedisURL            string
	RateLimitFailClosed bool
	UsageAsync          bool
	UsageRetention      time.Duration

	LangflowURL     string
	LangflowAPIKey  Secret
	LangflowTimeout time.Duration

	// APIKeySigningKeys is ordered newest first: index 0 signs new keys, the
	// rest only verify keys minted before a rotation.
	APIKeySigningKeys []SigningKey
	APIKeyIssuer      string

	WaldurURL string
	PublicURL string
	DataDir   string
}

// VarDoc describes one environment variable for documentation.
type VarDoc struct {
	Name        string
	Default     string
	Description string
	// Secret variables are redacted in logs and never echoed in errors.
	Secret bool
}

// varSpec ties a variable's documentation to how it is parsed and shown, so
// the list of variables exists exactly once.
type varSpec struct {
	VarDoc
	// defaultFor, when set, computes the default instead of Default (which
	// then only documents it): some defaults depend on DEV.
	defaultFor func(dev bool) string
	// apply parses the effective (trimmed, defaulted) value into c. Errors
	// must not contain the value of a secret variable.
	apply func(c *Config, v string) error
	// show renders the parsed value for LogValue; secrets are redacted by
	// LogValue itself, whatever show returns.
	show func(c *Config) string
}

// sameAsDev is the default of switches that are on in DEV and off otherwise.
func sameAsDev(dev bool) string { return strconv.FormatBool(dev) }

const minSigningSecretBytes = 32

// configSpecs is ordered: DEV comes first because other defaults depend on
// it. A function rather than a package variable, so no code can mutate the
// table that LoadConfig, LogValue and the docs share.
func configSpecs() []varSpec {
	return []varSpec{
		{
			VarDoc: VarDoc{Name: "DEV", Default: "false", Description: "Local development mode: local OIDC issuer, demo data, echo runtime. The `--dev` flag also sets it. Never enable in production."},
			apply:  func(c *Config, v string) (err error) { c.Dev, err = parseBool(v); return },
			show:   func(c *Config) string { return strconv.FormatBool(c.Dev) },
		},
		{
			VarDoc: VarDoc{Name: "ADDR", Default: "127.0.0.1:8080", Description: "Listen address (host:port)."},
			apply: func(c *Config, v string) error {
				if err := checkHostPort(v); err != nil {
					return err
				}
				c.Addr = v
				return nil
			},
			show: func(c *Config) string { return c.Addr },
		},
		{
			VarDoc: VarDoc{Name: "DATABASE_URL", Default: "sqlite:./data/agentregistry.db", Description: "Database: `postgres://` or `postgresql://` (PostgreSQL), `sqlite:PATH` or `file:PATH` (embedded SQLite, for development and single-node use)."},
			apply: func(c *Config, v string) error {
				if _, _, err := parseDatabaseURL(v); err != nil {
					return err
				}
				c.DatabaseURL = v
				return nil
			},
			show: func(c *Config) string { return redactURL(c.DatabaseURL) },
		},
		{
			VarDoc: VarDoc{Name: "LOG_LEVEL", Default: "info", Description: "Minimum log level: debug, info, warn or error."},
			apply: func(c *Config, v string) error {
				if _, ok := parseLevel(v); !ok {
					return fmt.Errorf("%q is not one of debug, info, warn, error", v)
				}
				c.LogLevel = strings.ToLower(v)
				return nil
			},
			show: func(c *Config) string { return c.LogLevel },
		},
		{
			VarDoc: VarDoc{Name: "LOG_FORMAT", Default: "json", Description: "Log format: json or text."},
			apply: func(c *Config, v string) error {
				v = strings.ToLower(v)
				if v != "json" && v != "text" {
					return fmt.Errorf("%q is not one of json, text", v)
				}
				c.LogFormat = v
				return nil
			},
			show: func(c *Config) string { return c.LogFormat },
		},
		{
			VarDoc: VarDoc{Name: "MIGRATE_ON_START", Default: "false", Description: "Apply database migrations when `serve` starts (dev SQLite always migrates). Otherwise run `agentregistry migrate`."},
			apply:  func(c *Config, v string) (err error) { c.MigrateOnStart, err = parseBool(v); return },
			show:   func(c *Config) string { return strconv.FormatBool(c.MigrateOnStart) },
		},
		{
			VarDoc: VarDoc{Name: "OIDC_ISSUER", Default: "", Description: "OIDC issuer URL (the Keycloak realm). Required unless DEV."},
			apply: func(c *Config, v string) error {
				if v == "" {
					return nil // required-ness is checked once DEV is known
				}
				if err := checkHTTPURL(v); err != nil {
					return err
				}
				c.OIDCIssuer = v
				return nil
			},
			show: func(c *Config) string { return c.OIDCIssuer },
		},
		{
			VarDoc: VarDoc{Name: "OIDC_CLIENT_IDS", Default: "portal-api,portal-web", Description: "Comma-separated audiences (client ids) accepted in access tokens."},
			apply: func(c *Config, v string) error {
				ids, err := parseList(v)
				if err != nil {
					return err
				}
				if len(ids) == 0 {
					return errors.New("must list at least one client id")
				}
				c.OIDCClientIDs = ids
				return nil
			},
			show: func(c *Config) string { return strings.Join(c.OIDCClientIDs, ",") },
		},
		nonEmptyString("OIDC_ROLE_CLIENT", "portal-api", "Client whose client roles (`resource_access.<client>.roles`) carry the roles below.", func(c *Config) *string { return &c.OIDCRoleClient }),
		nonEmptyString("OIDC_ROLE_ADMIN", "platform-admin", "Role name of platform administrators.", func(c *Config) *string { return &c.OIDCRoleAdmin }),
		nonEmptyString("OIDC_ROLE_PROVIDER", "provider", "Role name of agent providers.", func(c *Config) *string { return &c.OIDCRoleProvider }),
		nonEmptyString("OIDC_ROLE_CUSTOMER", "customer", "Role name of customers (buyers).", func(c *Config) *string { return &c.OIDCRoleCustomer }),
		nonEmptyString("OIDC_TENANT_CLAIM", "organization", "Token claim listing the caller's tenant memberships.", func(c *Config) *string { return &c.OIDCTenantClaim }),
		{
			VarDoc:     VarDoc{Name: "PLAYGROUND_ENABLED", Default: "same as DEV", Description: "Serve the GraphQL playground."},
			defaultFor: sameAsDev,
			apply:      func(c *Config, v string) (err error) { c.PlaygroundEnabled, err = parseBool(v); return },
			show:       func(c *Config) string { return strconv.FormatBool(c.PlaygroundEnabled) },
		},
		{
			VarDoc:     VarDoc{Name: "INTROSPECTION_ENABLED", Default: "same as DEV", Description: "Allow GraphQL introspection queries."},
			defaultFor: sameAsDev,
			apply:      func(c *Config, v string) (err error) { c.IntrospectionEnabled, err = parseBool(v); return },
			show:       func(c *Config) string { return strconv.FormatBool(c.IntrospectionEnabled) },
		},
		{
			VarDoc: VarDoc{Name: "CORS_ALLOWED_ORIGINS", Default: "empty (same-origin only); in DEV `http://127.0.0.1:*,http://localhost:*`", Description: "Comma-separated portal origins allowed to call /graphql from a browser, over HTTP and websockets (scheme included), e.g. `https://portal.example.com`. One `*` wildcard per origin is allowed."},
			defaultFor: func(dev bool) string {
				if dev {
					return "http://127.0.0.1:*,http://localhost:*"
				}
				return ""
			},
			apply: func(c *Config, v string) error {
				origins, err := parseList(v)
				if err != nil {
					return err
				}
				var errs []error
				for _, o := range origins {
					if err := checkOrigin(o); err != nil {
						errs = append(errs, err)
					}
				}
				if len(errs) > 0 {
					return errors.Join(errs...)
				}
				c.CORSAllowedOrigins = origins
				return nil
			},
			show: func(c *Config) string { return strings.Join(c.CORSAllowedOrigins, ",") },
		},
		{
			VarDoc: VarDoc{Name: "MAX_BODY_BYTES", Default: "1048576", Description: "Largest accepted request body in bytes."},
			apply: func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 {
					return fmt.Errorf("%q is not a positive integer", v)
				}
				c.MaxBodyBytes = n
				return nil
			},
			show: func(c *Config) string { return strconv.FormatInt(c.MaxBodyBytes, 10) },
		},
		positiveInt("GRAPHQL_MAX_COMPLEXITY", "1000", "Largest accepted GraphQL query complexity.", func(c *Config) *int { return &c.GraphQLMaxComplexity }),
		positiveInt("GRAPHQL_MAX_DEPTH", "12", "Deepest accepted GraphQL selection nesting.", func(c *Config) *int { return &c.GraphQLMaxDepth }),
		positiveInt("GRAPHQL_MAX_PAGE_SIZE", "100", "Largest `first`/`last` accepted on connections.", func(c *Config) *int { return &c.GraphQLMaxPageSize }),
		positiveDuration("WS_INIT_TIMEOUT", "10s", "How long a new websocket on /graphql may take to send `connection_init` before it is closed (4408).", func(c *Config) *time.Duration { return &c.WSInitTimeout }),
		positiveDuration("WS_PING_INTERVAL", "15s", "How often the server pings each websocket; a graphql-transport-ws client that does not answer with a pong within two intervals is disconnected.", func(c *Config) *time.Duration { return &c.WSPingInterval }),
		positiveInt("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "20", "Subscriptions one websocket may hold at once; further ones are refused with `RATE_LIMITED`, the connection stays.", func(c *Config) *int { return &c.WSMaxSubscriptionsPerConnection }),
		positiveInt("WS_MAX_CONNECTIONS_PER_USER", "10", "Websockets one person (token subject) may hold open on one replica; a further one is closed with 4429.", func(c *Config) *int { return &c.WSMaxConnectionsPerUser }),
		positiveDuration("USAGE_STATS_INTERVAL", "500ms", "Shortest time between two `usageStats` messages to one subscriber; the calls in between arrive together in the next message.", func(c *Config) *time.Duration { return &c.UsageStatsInterval }),
		positiveDuration("SHUTDOWN_TIMEOUT", "25s", "How long a stopping server waits for in-flight requests and drains (keep below the orchestrator's kill grace period).", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		positiveDuration("READ_HEADER_TIMEOUT", "10s", "How long a client may take to send request headers (slowloris protection).", func(c *Config) *time.Duration { return &c.ReadHeaderTimeout }),
		positiveInt("DB_MAX_OPEN_CONNS", "20", "Maximum open database connections per replica.", func(c *Config) *int { return &c.DBMaxOpenConns }),
		{
			VarDoc: VarDoc{Name: "DB_MAX_IDLE_CONNS", Default: "10", Description: "Maximum idle database connections kept per replica (at most DB_MAX_OPEN_CONNS)."},
			apply: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return fmt.Errorf("%q is not a non-negative integer", v)
				}
				c.DBMaxIdleConns = n
				return nil
			},
			show: func(c *Config) string { return strconv.Itoa(c.DBMaxIdleConns) },
		},
		{
			VarDoc: VarDoc{Name: "RATE_LIMIT_FAIL_CLOSED", Default: "false", Description: "With REDIS_URL: answer 503 when Redis is unreachable instead of letting calls through unlimited (monthly quotas are enforced from the database either way)."},
			apply:  func(c *Config, v string) (err error) { c.RateLimitFailClosed, err = parseBool(v); return },
			show:   func(c *Config) string { return strconv.FormatBool(c.RateLimitFailClosed) },
		},
		positiveDuration("USAGE_RETENTION", "720h", "How long raw usage records (the portal's recent calls) are kept; daily rollups, quotas and billing are kept regardless.", func(c *Config) *time.Duration { return &c.UsageRetention }),
		{
			VarDoc: VarDoc{Name: "USAGE_ASYNC", Default: "false", Description: "Answer invokes before their usage record commits (lower latency; a crash can lose the last moments of usage). Default: a 2xx answer means its record is committed."},
			apply:  func(c *Config, v string) (err error) { c.UsageAsync, err = parseBool(v); return },
			show:   func(c *Config) string { return strconv.FormatBool(c.UsageAsync) },
		},
		{
			VarDoc: VarDoc{Name: "REDIS_URL", Default: "", Description: "Redis for shared rate limits and quota counters across replicas (`redis://` or `rediss://`). Empty: in-process limits."},
			apply: func(c *Config, v string) error {
				if v == "" {
					return nil
				}
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
					return fmt.Errorf("%s is not a redis:// or rediss:// URL", quoteURL(v))
				}
				c.RedisURL = v
				return nil
			},
			show: func(c *Config) string { return redactURL(c.RedisURL) },
		},
		optionalHTTPURL("LANGFLOW_URL", "Langflow base URL. Empty in DEV: a built-in echo runtime answers.", func(c *Config) *string { return &c.LangflowURL }),
		{
			VarDoc: VarDoc{Name: "LANGFLOW_API_KEY", Default: "", Description: "Langflow API key (sent as `x-api-key`).", Secret: true},
			apply:  func(c *Config, v string) error { c.LangflowAPIKey = Secret(v); return nil },
			show:   func(c *Config) string { return c.LangflowAPIKey.Reveal() },
		},
		positiveDuration("LANGFLOW_TIMEOUT", "60s", "Upper bound on one Langflow run.", func(c *Config) *time.Duration { return &c.LangflowTimeout }),
		{
			VarDoc: VarDoc{Name: "APIKEY_SIGNING_KEYS", Default: "", Description: "API key signing secrets as `kid:secret,kid2:secret2`, newest first; each secret at least 32 bytes. Required unless DEV.", Secret: true},
			apply: func(c *Config, v string) error {
				if v == "" {
					return nil // required-ness is checked once DEV is known
				}
				keys, err := parseSigningKeys(v)
				if err != nil {
					return err
				}
				c.APIKeySigningKeys = keys
				return nil
			},
			show: func(c *Config) string {
				ids := make([]string, len(c.APIKeySigningKeys))
				for i, k := range c.APIKeySigningKeys {
					ids[i] = k.ID
				}
				return strings.Join(ids, ",")
			},
		},
		nonEmptyString("APIKEY_ISSUER", "agentregistry", "Issuer name embedded in minted API keys.", func(c *Config) *string { return &c.APIKeyIssuer }),
		optionalHTTPURL("WALDUR_URL", "Waldur HomePort URL the portal links to (marketplace, billing, organisation). Empty: no links.", func(c *Config) *string { return &c.WaldurURL }),
		optionalHTTPURL("PUBLIC_URL", "This service's URL as browsers reach it (the host in widget embed snippets). Empty in DEV: the listen address.", func(c *Config) *string { return &c.PublicURL }),
		nonEmptyString("DATA_DIR", "./data", "Directory for local files (the SQLite database, stored documents).", func(c *Config) *string { return &c.DataDir }),
	}
}

func nonEmptyString(name, def, desc string, field func(*Config) *string) varSpec {
	return varSpec{
		VarDoc: VarDoc{Name: name, Default: def, Description: desc},
		apply: func(c *Config, v string) error {
			// Defaults are non-empty, so an empty value cannot reach here;
			// the check guards against a future default of "".
			if v == "" {
				return errors.New("must not be empty")
			}
			*field(c) = v
			return nil
		},
		show: func(c *Config) string { return *field(c) },
	}
}

func positiveInt(name, def, desc string, field func(*Config) *int) varSpec {
	return varSpec{
		VarDoc: VarDoc{Name: name, Default: def, Description: desc},
		apply: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%q is not a positive integer", v)
			}
			*field(c) = n
			return nil
		},
		show: func(c *Config) string { return strconv.Itoa(*field(c)) },
	}
}

func positiveDuration(name, def, desc string, field func(*Config) *time.Duration) varSpec {
	return varSpec{
		VarDoc: VarDoc{Name: name, Default: def, Description: desc},
		apply: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%q is not a positive duration (e.g. 30s, 2m)", v)
			}
			*field(c) = d
			return nil
		},
		show: func(c *Config) string { return field(c).String() },
	}
}

func optionalHTTPURL(name, desc string, field func(*Config) *string) varSpec {
	return varSpec{
		VarDoc: VarDoc{Name: name, Default: "", Description: desc},
		apply: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			if err := checkHTTPURL(v); err != nil {
				return err
			}
			*field(c) = v
			return nil
		},
		show: func(c *Config) string { return redactURL(*field(c)) },
	}
}

// ConfigVars lists every environment variable the service reads, in the
// order LoadConfig reads them. It is the source of the README table.
func ConfigVars() []VarDoc {
	specs := configSpecs()
	out := make([]VarDoc, len(specs))
	for i, s := range specs {
		out[i] = s.VarDoc
	}
	return out
}

// ConfigMarkdownTable renders ConfigVars as a Markdown table for README.md,
// so the documentation is generated rather than kept in sync by hand.
func ConfigMarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Description |\n|---|---|---|\n")
	for _, v := range ConfigVars() {
		def := v.Default
		switch {
		case def == "":
			def = "(empty)"
		case strings.Contains(def, "`") || strings.Contains(def, " "):
			// Already prose; leave its own formatting alone.
		default:
			def = "`" + def + "`"
		}
		desc := v.Description
		if v.Secret {
			desc += " Secret: never logged."
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, escapeCell(def), escapeCell(desc))
	}
	return b.String()
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// OverrideEnv returns a getenv that answers from overrides first. The CLI
// uses it to let flags such as --dev win over the environment without
// mutating the process environment.
func OverrideEnv(getenv func(string) string, overrides map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		return getenv(name)
	}
}

// LoadConfig reads and validates the configuration. It reports every problem
// at once (joined, one per line) so an operator fixes a deployment in one
// round instead of one variable per restart. Empty variables take their
// defaults.
func LoadConfig(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	for _, s := range configSpecs() {
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" {
			v = s.Default
			if s.defaultFor != nil {
				v = s.defaultFor(c.Dev)
			}
		}
		if err := s.apply(&c, v); err != nil {
			errs = append(errs, prefixErrors(s.Name, err)...)
		}
	}
	if !c.Dev {
		// An invalid value was already reported; only a missing one is new.
		if strings.TrimSpace(getenv("OIDC_ISSUER")) == "" {
			errs = append(errs, errors.New("OIDC_ISSUER: required unless DEV=true"))
		}
		if strings.TrimSpace(getenv("APIKEY_SIGNING_KEYS")) == "" {
			errs = append(errs, errors.New("APIKEY_SIGNING_KEYS: required unless DEV=true"))
		}
	}
	if c.DBMaxOpenConns > 0 && c.DBMaxIdleConns > c.DBMaxOpenConns {
		errs = append(errs, fmt.Errorf("DB_MAX_IDLE_CONNS: %d exceeds DB_MAX_OPEN_CONNS (%d)", c.DBMaxIdleConns, c.DBMaxOpenConns))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

// prefixErrors names the variable on every line, including each part of a
// joined error, so messages read "NAME: problem".
func prefixErrors(name string, err error) []error {
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	out := make([]error, len(parts))
	for i, p := range parts {
		out[i] = fmt.Errorf("%s: %w", name, p)
	}
	return out
}

// IsSQLite reports whether DATABASE_URL names an SQLite database. The caller
// warns when that happens outside DEV: SQLite cannot be shared by replicas.
func (c Config) IsSQLite() bool {
	driver, _, err := parseDatabaseURL(c.DatabaseURL)
	return err == nil && driver == "sqlite"
}

// DatabaseDriver returns the database/sql driver name for DATABASE_URL:
// "sqlite" (modernc.org/sqlite) or "postgres" (lib/pq).
func (c Config) DatabaseDriver() string {
	driver, _, _ := parseDatabaseURL(c.DatabaseURL)
	return driver
}

// DatabaseDSN returns the data source name to pass to sql.Open with
// DatabaseDriver: a `file:` URI for SQLite, the URL unchanged for PostgreSQL.
func (c Config) DatabaseDSN() string {
	_, dsn, _ := parseDatabaseURL(c.DatabaseURL)
	return dsn
}

// AutoMigrate reports whether serve applies migrations itself: on request,
// and always for dev SQLite, where there is no separate deploy step.
func (c Config) AutoMigrate() bool {
	return c.MigrateOnStart || (c.Dev && c.IsSQLite())
}

// LogValue renders the configuration for a start-up log line keyed by
// variable name. Secret variables show only whether they are set; URLs lose
// their passwords.
func (c Config) LogValue() slog.Value {
	specs := configSpecs()
	attrs := make([]slog.Attr, 0, len(specs))
	for _, s := range specs {
		v := s.show(&c)
		if s.Secret && v != "" {
			v = redacted
		}
		attrs = append(attrs, slog.String(s.Name, v))
	}
	return slog.GroupValue(attrs...)
}

// String and GoString keep secrets out of fmt output (%v, %+v, %#v), which
// would otherwise print raw fields.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("Config{")
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", a.Key, a.Value.String())
	}
	b.WriteString("}")
	return b.String()
}

func (c Config) GoString() string { return c.String() }

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not a boolean (true or false)", v)
	}
	return b, nil
}

func parseLevel(v string) (slog.Level, bool) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// parseList splits a comma list, trimming blanks; an empty item (",,") is
// almost always a typo, so it is an error rather than silently dropped.
func parseList(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			return nil, fmt.Errorf("%q has an empty item", v)
		}
	}
	return parts, nil
}

func checkHostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has an invalid port (want 0-65535)", v)
	}
	return nil
}

func checkHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s is not an absolute http:// or https:// URL", quoteURL(v))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s must not have a query or fragment", quoteURL(v))
	}
	return nil
}

// checkOrigin validates a CORS origin as a browser sends it: scheme://host[:port]
// with no path. A bare "*" is refused: /graphql carries bearer tokens and
// should only be reachable from known portals.
func checkOrigin(o string) error {
	if o == "*" {
		return errors.New(`"*" is not allowed; list the portal origins`)
	}
	rest, ok := strings.CutPrefix(o, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(o, "http://")
	}
	if !ok || rest == "" {
		return fmt.Errorf("%q is not an origin (http:// or https://host[:port])", o)
	}
	if strings.ContainsAny(rest, "/?#@ \t") {
		return fmt.Errorf("%q is not an origin: no path, query, user info or trailing slash", o)
	}
	if strings.Count(o, "*") > 1 {
		return fmt.Errorf("%q has more than one * wildcard", o)
	}
	return nil
}

// parseDatabaseURL maps DATABASE_URL to a driver and DSN. Errors echo the
// value only with its password removed.
func parseDatabaseURL(v string) (driver, dsn string, err error) {
	switch {
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		u, perr := url.Parse(v)
		if perr != nil || u.Host == "" {
			return "", "", fmt.Errorf("%s is not a valid PostgreSQL URL (postgres://user:pass@host:port/db)", quoteURL(v))
		}
		return "postgres", v, nil
	case strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(v, "sqlite:")
		// sqlite:///abs/path and sqlite://rel both mean a file path.
		path = strings.TrimPrefix(path, "//")
		if path == "" || strings.HasPrefix(path, "?") {
			return "", "", fmt.Errorf("%q has no database file path", v)
		}
		return "sqlite", "file:" + path, nil
	case strings.HasPrefix(v, "file:"):
		if path := strings.TrimPrefix(v, "file:"); path == "" || strings.HasPrefix(path, "?") {
			return "", "", fmt.Errorf("%q has no database file path", v)
		}
		return "sqlite", v, nil
	}
	return "", "", fmt.Errorf("%s is not a postgres://, postgresql://, sqlite: or file: URL", quoteURL(v))
}

func parseSigningKeys(v string) ([]SigningKey, error) {
	var keys []SigningKey
	var errs []error
	seen := map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		kid, secret, ok := strings.Cut(strings.TrimSpace(entry), ":")
		kid = strings.TrimSpace(kid)
		// Never echo the entry: it may be a secret without its kid.
		if !ok || kid == "" {
			errs = append(errs, fmt.Errorf("entry %d is not kid:secret", i+1))
			continue
		}
		if !validID(kid, 64) {
			errs = append(errs, fmt.Errorf("entry %d: kid must be 1-64 characters of A-Z a-z 0-9 . _ -", i+1))
			continue
		}
		if seen[kid] {
			errs = append(errs, fmt.Errorf("kid %q appears twice", kid))
			continue
		}
		seen[kid] = true
		if len(secret) < minSigningSecretBytes {
			errs = append(errs, fmt.Errorf("kid %q: secret is %d bytes, need at least %d", kid, len(secret), minSigningSecretBytes))
			continue
		}
		keys = append(keys, SigningKey{ID: kid, Secret: Secret(secret)})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// validID reports whether s is 1..max characters of [A-Za-z0-9._-]: safe to
// log, put in headers and embed in keys.
func validID(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// redactURL removes the password from a URL for display.
func redactURL(v string) string {
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		// Unparseable: it may still contain a password, so hide it whole.
		return redacted
	}
	return u.Redacted()
}

// quoteURL quotes a URL for an error message without its password.
func quoteURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		if strings.Contains(v, "@") {
			return "(unparseable URL, hidden because it may hold credentials)"
		}
		return strconv.Quote(v)
	}
	return strconv.Quote(u.Redacted())
}
