package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
	"github.com/gsvdev/agentregistry/internal/seed"
)

// devMode holds what only --dev has: the local OIDC issuer (served by this process,
// verified through the same go-oidc path as Keycloak), a persisted API-key signing
// secret, and the seeded demo data with freshly minted credentials.
type devMode struct {
	issuer     *devissuer.Issuer
	signingKey SigningKey
	cfg        Config
	seeded     seed.Result
	runtime    http.Handler // the echo runtime, when LANGFLOW_URL is empty
}

const devTokenTTL = 12 * time.Hour

func newDevMode(cfg Config, listenAddr string) (*devMode, error) {
	key, err := devissuer.LoadOrCreateKey(filepath.Join(cfg.DataDir, "dev-oidc-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	iss, err := devissuer.New("http://"+listenAddr+devIssuerPath, key)
	if err != nil {
		return nil, err
	}
	secret, err := loadOrCreateSecret(devSecretPath(cfg))
	if err != nil {
		return nil, err
	}
	return &devMode{issuer: iss, signingKey: SigningKey{ID: "dev", Secret: Secret(secret)}, cfg: cfg}, nil
}

// devIssuerPath is where the local issuer lives on this server (Keycloak's realm layout).
const devIssuerPath = "/dev/oidc/realms/dev"

// loadOrCreateSecret keeps the dev API-key secret across restarts so keys printed by an
// earlier `make run` stay valid until the next start revokes them.
func loadOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("dev api key secret: %w", err)
	}
	secret := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return "", fmt.Errorf("dev api key secret: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		return "", fmt.Errorf("dev api key secret: %w", err)
	}
	return secret, nil
}

func (d *devMode) seed(ctx context.Context, client *ent.Client, svc *keys.Service, base string) error {
	res, err := seed.Demo(ctx, client)
	if err != nil {
		return err
	}
	// The widget demo is served from this server's own origin, whatever port it got.
	if err := seed.AllowOrigin(ctx, client, res.Config, base); err != nil {
		return err
	}
	if d.seeded, err = seed.DevKeys(ctx, client, svc, res); err != nil {
		return err
	}
	return nil
}

func (d *devMode) token(role auth.Role, subject, email string) string {
	clientID := devissuer.DefaultClientID
	if len(d.cfg.OIDCClientIDs) > 0 {
		clientID = d.cfg.OIDCClientIDs[len(d.cfg.OIDCClientIDs)-1]
	}
	name := map[auth.Role]string{
		auth.RolePlatformAdmin: d.cfg.OIDCRoleAdmin, auth.RoleProvider: d.cfg.OIDCRoleProvider, auth.RoleCustomer: d.cfg.OIDCRoleCustomer,
	}[role]
	tok, err := d.issuer.DevToken(auth.Role(name), subject, email, clientID, d.cfg.OIDCRoleClient, devTokenTTL)
	if err != nil {
		return "(error: " + err.Error() + ")"
	}
	return tok
}

func (d *devMode) printCredentials(w io.Writer, base string) {
	fmt.Fprintf(w, "dev admin token: %s\n", d.token(auth.RolePlatformAdmin, seed.AdminSubject, "admin@demo.test"))
	fmt.Fprintf(w, "dev provider token: %s\n", d.token(auth.RoleProvider, seed.ProviderSubject, "provider@demo.test"))
	fmt.Fprintf(w, "dev customer token: %s\n", d.token(auth.RoleCustomer, seed.CustomerSubject, "customer@demo.test"))
	fmt.Fprintf(w, "dev api key: %s\n", d.seeded.APIKey)
	fmt.Fprintf(w, "dev publishable key: %s\n", d.seeded.PublishableKey)
	fmt.Fprintf(w, "dev config id: %s\n", d.seeded.Config)
	fmt.Fprintf(w, "widget demo: %s/widget/demo\n", base)
	fmt.Fprintf(w, "invoke: curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"input\":\"hello\"}' %s/api/agent-gateway/invoke/\n", d.seeded.APIKey, base)
	fmt.Fprintf(w, "try: curl -s -H 'Authorization: Bearer <dev customer token>' -H 'Content-Type: application/json' -d '{\"query\":\"{ viewer { subject roles memberships { role tenant { name } } } }\"}' %s/graphql\n", base)
}

func devSecretPath(cfg Config) string { return filepath.Join(cfg.DataDir, "dev-apikey-secret") }
