package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/seed"
	"github.com/gsvdev/agentregistry/internal/subscriptions"
	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
	"github.com/gsvdev/agentregistry/server"
)

// issuer is a local OIDC issuer the service trusts (OIDC_ISSUER points at it), so the
// subscriptions authenticate through the same verification path as production tokens.
type issuer struct {
	*devissuer.Issuer
	srv *http.Server
}

func startIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	iss, err := devissuer.New("http://"+ln.Addr().String()+"/realms/bench", key)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &issuer{Issuer: iss, srv: srv}, nil
}

func (i *issuer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = i.srv.Shutdown(ctx)
}

// token mints a Keycloak-shaped access token for subject. It outlives any run: an
// expired token would close the subscriptions (4403) in the middle of a measurement.
func (i *issuer) token(role auth.Role, subject string) (string, error) {
	return i.DevToken(role, subject, subject+"@bench.test", devissuer.DefaultClientID, devissuer.DefaultAudience, 3*time.Hour)
}

// tenant is one buyer of the demo agent.
type tenant struct {
	ID, ConfigID pulid.ID
	Key          string   // secret API key of its config
	Subjects     []string // members allowed to watch it
}

// world is what the tool created besides the seed.
type world struct {
	ProviderTenant pulid.ID
	Providers      []string // subjects that are members of the provider tenant
	Tenants        []tenant
}

// subjectsFor is how many people must share a load of subs subscriptions: the service
// admits at most connsPerSubject connections of subsPerConn subscriptions per subject,
// and the benchmark must not hit that cap (it runs the service with the default caps).
func subjectsFor(subs int) int {
	return max(1, (subs+connsPerSubject*subsPerConn-1)/(connsPerSubject*subsPerConn))
}

// prepare creates the buyer tenants (membership, subscription to the seeded plan with
// its config, a secret key) and the provider's extra members, before the service starts.
func prepare(ctx context.Context, s *h.Service, w *world, tenants, buyerSubjects, providerSubjects int) error {
	db, err := database.Open(ctx, database.DriverPostgres, s.DSN, database.Options{MaxOpenConns: 4})
	if err != nil {
		return err
	}
	defer db.Close()
	sys := auth.SystemContext(ctx)
	c := db.Client
	demo, err := seed.Demo(sys, c) // finds the rows `agentregistry seed` wrote
	if err != nil {
		return err
	}
	w.ProviderTenant = demo.ProviderTenant
	cfg, err := server.LoadConfig(s.Getenv)
	if err != nil {
		return err
	}
	keySvc, closeKeys, err := server.OpenKeys(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeKeys()
	subs := subscriptions.New(c)
	for p := range providerSubjects {
		subj := fmt.Sprintf("bench-provider-%02d", p)
		if err := c.Membership.Create().SetTenantID(demo.ProviderTenant).SetSubject(subj).SetRole(membership.RoleMember).Exec(sys); err != nil {
			return fmt.Errorf("provider membership: %w", err)
		}
		w.Providers = append(w.Providers, subj)
	}
	for i := range tenants {
		t, err := c.Tenant.Create().SetName(fmt.Sprintf("Bench buyer %03d", i)).SetSlug(fmt.Sprintf("bench-buyer-%03d", i)).Save(sys)
		if err != nil {
			return fmt.Errorf("tenant: %w", err)
		}
		tn := tenant{ID: t.ID}
		for j := range buyerSubjects {
			subj := fmt.Sprintf("bench-buyer-%03d-%02d", i, j)
			if err := c.Membership.Create().SetTenantID(t.ID).SetSubject(subj).SetRole(membership.RoleOwner).Exec(sys); err != nil {
				return fmt.Errorf("membership: %w", err)
			}
			tn.Subjects = append(tn.Subjects, subj)
		}
		sub, err := subs.Create(sys, subscriptions.CreateParams{TenantID: t.ID, PlanID: demo.Plan})
		if err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		conf, err := sub.QueryConfig().Only(sys)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		tn.ConfigID = conf.ID
		k, err := keySvc.Create(sys, keys.CreateParams{ConfigID: conf.ID, Name: "bench", Kind: apikey.KindSecret})
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		tn.Key = k.Secret
		w.Tenants = append(w.Tenants, tn)
	}
	if len(w.Tenants) == 0 {
		return errors.New("no tenants")
	}
	return nil
}
