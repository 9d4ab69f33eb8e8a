package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	entapikey "github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/privacy"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// t0 is whole seconds: SQLite and PostgreSQL both keep that exactly.
var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

// recorder is an Invalidator that remembers what it was told.
type recorder struct {
	mu     sync.Mutex
	hashes []string
}

func (r *recorder) Invalidate(hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hashes = append(r.hashes, hash)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hashes...)
}

// buyer is one buyer tenant with a subscribed config.
type buyer struct {
	tenant, project, config pulid.ID
}

type fixture struct {
	db     *database.DB
	svc    *Service
	inv    *recorder
	kr     *apikey.Keyring
	now    time.Time
	a, b   buyer
	client *ent.Client
}

// setClock fixes the service's clock.
func (f *fixture) setClock(at time.Time) {
	f.now = at
	f.svc.now = func() time.Time { return f.now }
}

func newFixture(t *testing.T, driver string) *fixture {
	t.Helper()
	db := dbtest.Open(t, driver)
	kr, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "k1", Secret: []byte(strings.Repeat("s", 32))}},
		apikey.KeyringOptions{Issuer: "agentregistry", Audience: "agentregistry/gateway"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, kr: kr, inv: &recorder{}, client: db.Client}
	f.svc = New(db.Client, kr, f.inv)
	// The clock must be after real now: keys expire a year after it and Mint refuses
	// expiries in the past relative to the keyring's (real) clock.
	f.setClock(time.Now().UTC().Truncate(time.Second).Add(time.Hour))

	ctx := auth.SystemContext(context.Background())
	c := db.Client
	prov := c.Tenant.Create().SetName("Provider").SetSlug("prov").SaveX(ctx)
	agent := c.Agent.Create().SetTenantID(prov.ID).SetName("Agent").SetSlug("agent").SaveX(ctx)
	plan := c.Plan.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetName("Plan").SaveX(ctx)
	mk := func(slug string) buyer {
		ten := c.Tenant.Create().SetName(slug).SetSlug(slug).SaveX(ctx)
		prj := c.Project.Create().SetTenantID(ten.ID).SetName("p").SaveX(ctx)
		sub := c.Subscription.Create().SetTenantID(ten.ID).SetProjectID(prj.ID).SetAgentID(agent.ID).
			SetPlanID(plan.ID).SetStatus("active").SaveX(ctx)
		cfg := c.AgentConfig.Create().SetTenantID(ten.ID).SetSubscriptionID(sub.ID).SaveX(ctx)
		return buyer{tenant: ten.ID, project: prj.ID, config: cfg.ID}
	}
	f.a, f.b = mk("buyer-a"), mk("buyer-b")
	return f
}

func (f *fixture) create(t *testing.T, p CreateParams) Created {
	t.Helper()
	if p.Name == "" {
		p.Name = "k"
	}
	if p.Kind == "" {
		p.Kind = apikey.KindSecret
	}
	if p.ConfigID == "" {
		p.ConfigID = f.a.config
	}
	c, err := f.svc.Create(auth.SystemContext(context.Background()), p)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

func (f *fixture) row(t *testing.T, id pulid.ID) *ent.APIKey {
	t.Helper()
	k, err := f.client.APIKey.Get(auth.SystemContext(context.Background()), id)
	if err != nil {
		t.Fatalf("get key %s: %v", id, err)
	}
	return k
}

func (f *fixture) countKeys(t *testing.T) int {
	t.Helper()
	n, err := f.client.APIKey.Query().Count(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rawRow reads every column of the api_keys row as text, bypassing ent.
func rawRow(t *testing.T, db *sql.DB, id pulid.ID, driver string) map[string]string {
	t.Helper()
	q := "SELECT * FROM api_keys WHERE id = ?"
	if driver == database.DriverPostgres {
		q = "SELECT * FROM api_keys WHERE id = $1"
	}
	rows, err := db.Query(q, string(id))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no api_keys row %s", id)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		switch v := vals[i].(type) {
		case nil:
			out[c] = ""
		case []byte:
			out[c] = string(v)
		default:
			out[c] = fmt.Sprint(v)
		}
	}
	return out
}

func sameTime(a *time.Time, b time.Time) bool { return a != nil && a.Equal(b) }

func TestCreateStoresOnlyTheHash(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			for _, tc := range []struct {
				name       string
				kind       apikey.Kind
				prefix     string
				wantScopes []string
			}{
				{"secret", apikey.KindSecret, apikey.PrefixSecret, []string{"invoke"}},
				{"publishable", apikey.KindPublishable, apikey.PrefixPublishable, []string{"widget:invoke"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := f.create(t, CreateParams{Kind: tc.kind, Name: "n-" + tc.name, CreatedBy: "test"})
					if !strings.HasPrefix(c.Secret, tc.prefix) {
						t.Fatalf("secret %q does not start with %q", c.Secret[:12], tc.prefix)
					}
					row := rawRow(t, f.db.SQL, c.Key.ID, driver)
					if len(row) < 10 {
						t.Fatalf("suspiciously few columns: %v", row)
					}
					jwt := strings.TrimPrefix(c.Secret, tc.prefix)
					for col, v := range row {
						if v == "" {
							continue
						}
						if strings.Contains(v, c.Secret) || strings.Contains(v, jwt) {
							t.Errorf("column %s holds the key", col)
						}
						// The signature (last JWT segment) must not be stored either.
						if sig := jwt[strings.LastIndex(jwt, ".")+1:]; strings.Contains(v, sig) {
							t.Errorf("column %s holds the key's signature", col)
						}
					}
					if got, want := row["key_hash"], apikey.HashKey(c.Secret); got != want {
						t.Errorf("key_hash = %q, want sha256 of the key %q", got, want)
					}
					if !strings.HasPrefix(c.Secret, row["prefix"]) || len(row["prefix"]) <= len(tc.prefix) {
						t.Errorf("prefix %q is not a prefix of the key", row["prefix"])
					}
					if got, want := row["last4"], c.Secret[len(c.Secret)-4:]; got != want {
						t.Errorf("last4 = %q, want %q", got, want)
					}
					k := f.row(t, c.Key.ID)
					if k.TenantID != f.a.tenant || k.ConfigID != f.a.config || k.ProjectID == nil || *k.ProjectID != f.a.project {
						t.Errorf("row tenant/config/project = %s/%s/%v, want %s/%s/%s", k.TenantID, k.ConfigID, k.ProjectID, f.a.tenant, f.a.config, f.a.project)
					}
					if strings.Join(k.Scopes, ",") != strings.Join(tc.wantScopes, ",") {
						t.Errorf("scopes = %v, want %v", k.Scopes, tc.wantScopes)
					}
					if want := f.now.Add(f.svc.DefaultTTL); !sameTime(k.ExpiresAt, want) {
						t.Errorf("expires_at = %v, want now+DefaultTTL %v", k.ExpiresAt, want)
					}
					// The key itself carries what the row says.
					claims, err := f.kr.Parse(c.Secret)
					if err != nil {
						t.Fatalf("minted key does not parse: %v", err)
					}
					if claims.TenantID != f.a.tenant || claims.ConfigID != f.a.config || claims.ProjectID != f.a.project || claims.ID != k.Jti {
						t.Errorf("claims %+v do not match the row", claims)
					}
				})
			}
		})
	}
}

// A customer creates keys for its own tenant's configs; another tenant's config is not
// found, and a provider (wrong role) or an anonymous caller is refused.
func TestCreateAuthorization(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			v := &auth.Viewer{Subject: "cust", Roles: []auth.Role{auth.RoleCustomer},
				Tenants: []auth.TenantMembership{{TenantID: f.a.tenant, Role: auth.TenantMember}}}
			c, err := f.svc.Create(auth.NewContext(context.Background(), v), CreateParams{ConfigID: f.a.config, Name: "mine", Kind: apikey.KindSecret})
			if err != nil || c.Secret == "" || c.Key.TenantID != f.a.tenant {
				t.Fatalf("customer creating a key for its own config: %v", err)
			}
		})
	}
}

func TestCreateIsDeniedOutsideTheTenantOrRole(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			customerOf := func(tenant pulid.ID, role auth.TenantRole) *auth.Viewer {
				return &auth.Viewer{Subject: "cust", Roles: []auth.Role{auth.RoleCustomer},
					Tenants: []auth.TenantMembership{{TenantID: tenant, Role: role}}}
			}
			for _, tc := range []struct {
				name   string
				viewer *auth.Viewer
				config pulid.ID
				check  func(error) bool
				want   string
			}{
				// Another tenant's config is invisible: not found, not forbidden.
				{"other tenant's config", customerOf(f.b.tenant, auth.TenantOwner), f.a.config, ent.IsNotFound, "not found"},
				{"member of no tenant", &auth.Viewer{Subject: "nobody", Roles: []auth.Role{auth.RoleCustomer}}, f.a.config, ent.IsNotFound, "not found"},
				// Own config, but the wrong platform role: keys are the customer role's.
				{"own config as a provider", &auth.Viewer{Subject: "prov", Roles: []auth.Role{auth.RoleProvider},
					Tenants: []auth.TenantMembership{{TenantID: f.a.tenant, Role: auth.TenantOwner}}}, f.a.config,
					func(err error) bool { return errors.Is(err, privacy.Deny) }, "privacy deny"},
				{"no viewer at all", nil, f.a.config, func(err error) bool { return err != nil }, "an error"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := f.countKeys(t)
					ctx := context.Background()
					if tc.viewer != nil {
						ctx = auth.NewContext(ctx, tc.viewer)
					}
					c, err := f.svc.Create(ctx, CreateParams{ConfigID: tc.config, Name: "x", Kind: apikey.KindSecret})
					if err == nil || !tc.check(err) {
						t.Fatalf("Create = %+v, %v; want %s", c.Key, err, tc.want)
					}
					if c.Secret != "" {
						t.Error("a refused Create returned a secret")
					}
					if after := f.countKeys(t); after != before {
						t.Errorf("keys: %d before, %d after a refused Create", before, after)
					}
				})
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			ctx := auth.SystemContext(context.Background())
			base := f.now

			t.Run("idempotent and invalidates", func(t *testing.T) {
				c := f.create(t, CreateParams{})
				f.inv.hashes = nil
				k, err := f.svc.Revoke(ctx, c.Key.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !sameTime(k.RevokedAt, base) {
					t.Errorf("returned revoked_at = %v, want %v", k.RevokedAt, base)
				}
				if got := f.row(t, c.Key.ID).RevokedAt; !sameTime(got, base) {
					t.Errorf("stored revoked_at = %v, want %v", got, base)
				}
				if got := f.inv.got(); len(got) != 1 || got[0] != apikey.HashKey(c.Secret) {
					t.Errorf("invalidated %v, want exactly the key's hash", got)
				}
				// Again, later: nothing moves.
				f.setClock(base.Add(time.Hour))
				defer f.setClock(base)
				k2, err := f.svc.Revoke(ctx, c.Key.ID)
				if err != nil {
					t.Fatalf("second Revoke: %v", err)
				}
				if !sameTime(k2.RevokedAt, base) {
					t.Errorf("second Revoke returned revoked_at %v, want unchanged %v", k2.RevokedAt, base)
				}
				if got := f.row(t, c.Key.ID).RevokedAt; !sameTime(got, base) {
					t.Errorf("second Revoke moved revoked_at to %v", got)
				}
				for _, h := range f.inv.got() {
					if h != apikey.HashKey(c.Secret) {
						t.Errorf("invalidated a foreign hash %q", h)
					}
				}
			})

			t.Run("ends a rotation's grace now", func(t *testing.T) {
				c := f.create(t, CreateParams{})
				if _, err := f.svc.Rotate(ctx, c.Key.ID, 24*time.Hour, "test"); err != nil {
					t.Fatal(err)
				}
				f.inv.hashes = nil
				if _, err := f.svc.Revoke(ctx, c.Key.ID); err != nil {
					t.Fatal(err)
				}
				if got := f.row(t, c.Key.ID).RevokedAt; !sameTime(got, base) {
					t.Errorf("revoked_at = %v, want now %v (a grace period must not outlive a revocation)", got, base)
				}
				if got := f.inv.got(); len(got) != 1 || got[0] != apikey.HashKey(c.Secret) {
					t.Errorf("invalidated %v, want the key's hash", got)
				}
			})

			t.Run("unknown id", func(t *testing.T) {
				f.inv.hashes = nil
				_, err := f.svc.Revoke(ctx, pulid.MustNew("key"))
				if !ent.IsNotFound(err) {
					t.Errorf("Revoke(unknown) = %v, want not found", err)
				}
				if got := f.inv.got(); len(got) != 0 {
					t.Errorf("invalidated %v for an unknown key", got)
				}
			})
		})
	}
}

func TestRotate(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			ctx := auth.SystemContext(context.Background())
			for _, tc := range []struct {
				name  string
				kind  apikey.Kind
				grace time.Duration
			}{
				{"secret with grace", apikey.KindSecret, 24 * time.Hour},
				{"publishable with grace", apikey.KindPublishable, time.Hour},
				{"no grace", apikey.KindSecret, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var scopes []apikey.Scope
					if tc.kind == apikey.KindSecret {
						scopes = []apikey.Scope{apikey.ScopeInvoke, apikey.ScopeUsageRead}
					}
					old := f.create(t, CreateParams{Kind: tc.kind, Name: "rot " + tc.name, Scopes: scopes, CreatedBy: "alice"})
					f.inv.hashes = nil
					nw, err := f.svc.Rotate(ctx, old.Key.ID, tc.grace, "bob")
					if err != nil {
						t.Fatal(err)
					}
					if nw.Secret == "" || nw.Secret == old.Secret || nw.Key.ID == old.Key.ID {
						t.Fatal("Rotate did not mint a new key")
					}
					o := f.row(t, old.Key.ID)
					if o.ReplacedByID == nil || *o.ReplacedByID != nw.Key.ID {
						t.Errorf("old.replaced_by_id = %v, want %s", o.ReplacedByID, nw.Key.ID)
					}
					if want := f.now.Add(tc.grace); !sameTime(o.RevokedAt, want) {
						t.Errorf("old.revoked_at = %v, want now+grace %v", o.RevokedAt, want)
					}
					n := f.row(t, nw.Key.ID)
					if n.RevokedAt != nil || n.ReplacedByID != nil {
						t.Errorf("new key revoked_at=%v replaced_by=%v, want both nil", n.RevokedAt, n.ReplacedByID)
					}
					if n.ConfigID != o.ConfigID || n.TenantID != o.TenantID || n.Kind != o.Kind || n.Name != o.Name ||
						strings.Join(n.Scopes, ",") != strings.Join(o.Scopes, ",") {
						t.Errorf("new key %+v does not copy config/tenant/kind/name/scopes of %+v", n, o)
					}
					if n.CreatedBy != "bob" {
						t.Errorf("new key created_by = %q, want bob", n.CreatedBy)
					}
					if got := f.inv.got(); len(got) != 1 || got[0] != apikey.HashKey(old.Secret) {
						t.Errorf("invalidated %v, want the old key's hash", got)
					}
					// The old key's row still says it lives until the grace ends.
					rec := RecordOf(o)
					if tc.grace > 0 && rec.LiveAt(f.now.Add(tc.grace-time.Second)) != nil {
						t.Error("old key is not live during its grace period")
					}
					if err := rec.LiveAt(f.now.Add(tc.grace)); !errors.Is(err, apikey.ErrRevoked) {
						t.Errorf("old key after grace: %v, want ErrRevoked", err)
					}
				})
			}

			t.Run("revoked key", func(t *testing.T) {
				c := f.create(t, CreateParams{})
				if _, err := f.svc.Revoke(ctx, c.Key.ID); err != nil {
					t.Fatal(err)
				}
				before := f.countKeys(t)
				if _, err := f.svc.Rotate(ctx, c.Key.ID, time.Hour, "x"); !errors.Is(err, apikey.ErrRevoked) {
					t.Errorf("Rotate(revoked) = %v, want ErrRevoked", err)
				}
				if after := f.countKeys(t); after != before {
					t.Errorf("Rotate of a revoked key created %d keys", after-before)
				}
			})
		})
	}
}

func TestLookupByHash(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			sys := auth.SystemContext(context.Background())
			live := f.create(t, CreateParams{})
			revoked := f.create(t, CreateParams{Kind: apikey.KindPublishable})
			if _, err := f.svc.Revoke(sys, revoked.Key.ID); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name        string
				hash        string
				wantID      pulid.ID
				wantRevoked bool
			}{
				{"live", apikey.HashKey(live.Secret), live.Key.ID, false},
				{"revoked rows are returned", apikey.HashKey(revoked.Secret), revoked.Key.ID, true},
				{"unknown", apikey.HashKey("ar_sk_live_nope"), "", false},
				{"empty", "", "", false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					// The gateway has no viewer: the lookup must work without one.
					rec, err := f.svc.LookupByHash(context.Background(), tc.hash)
					if tc.wantID == "" {
						if !errors.Is(err, apikey.ErrNotFound) {
							t.Fatalf("LookupByHash = %+v, %v; want ErrNotFound", rec, err)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if rec.ID != tc.wantID || rec.TenantID != f.a.tenant || rec.ConfigID != f.a.config || rec.ProjectID != f.a.project {
						t.Errorf("record %+v, want id %s of tenant %s config %s project %s", rec, tc.wantID, f.a.tenant, f.a.config, f.a.project)
					}
					if (rec.RevokedAt != nil) != tc.wantRevoked {
						t.Errorf("RevokedAt = %v, want revoked=%v", rec.RevokedAt, tc.wantRevoked)
					}
					if tc.wantRevoked && !errors.Is(rec.LiveAt(f.now), apikey.ErrRevoked) {
						t.Error("revoked record is live")
					}
					if rec.ExpiresAt == nil || len(rec.Scopes) == 0 {
						t.Errorf("record lacks expiry or scopes: %+v", rec)
					}
				})
			}
		})
	}
}

func TestTouchLastUsed(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			f := newFixture(t, driver)
			k1 := f.create(t, CreateParams{}).Key.ID
			k2 := f.create(t, CreateParams{}).Key.ID
			untouched := f.create(t, CreateParams{}).Key.ID
			ctx := context.Background() // system code: no viewer needed
			steps := []struct {
				name string
				ids  []pulid.ID
				at   time.Time
				want map[pulid.ID]time.Time // zero: still NULL
			}{
				{"nothing", nil, t0, map[pulid.ID]time.Time{k1: {}, k2: {}}},
				{"first use", []pulid.ID{k1}, t0, map[pulid.ID]time.Time{k1: t0, k2: {}}},
				{"later", []pulid.ID{k1, k2}, t0.Add(time.Minute), map[pulid.ID]time.Time{k1: t0.Add(time.Minute), k2: t0.Add(time.Minute)}},
				{"earlier never moves back", []pulid.ID{k1, k2}, t0.Add(30 * time.Second), map[pulid.ID]time.Time{k1: t0.Add(time.Minute), k2: t0.Add(time.Minute)}},
				{"same instant", []pulid.ID{k1}, t0.Add(time.Minute), map[pulid.ID]time.Time{k1: t0.Add(time.Minute)}},
				{"mixed", []pulid.ID{k1, pulid.MustNew("key")}, t0.Add(time.Hour), map[pulid.ID]time.Time{k1: t0.Add(time.Hour), k2: t0.Add(time.Minute)}},
			}
			for _, s := range steps {
				if err := f.svc.TouchLastUsed(ctx, s.ids, s.at); err != nil {
					t.Fatalf("%s: TouchLastUsed: %v", s.name, err)
				}
				for id, want := range s.want {
					got := f.row(t, id).LastUsedAt
					switch {
					case want.IsZero() && got != nil:
						t.Errorf("%s: key %s last_used_at = %v, want NULL", s.name, id, got)
					case !want.IsZero() && !sameTime(got, want):
						t.Errorf("%s: key %s last_used_at = %v, want %v", s.name, id, got, want)
					}
				}
			}
			if got := f.row(t, untouched).LastUsedAt; got != nil {
				t.Errorf("a key never touched has last_used_at %v", got)
			}
			n, err := f.client.APIKey.Query().Where(entapikey.LastUsedAtNotNil()).Count(auth.SystemContext(ctx))
			if err != nil || n != 2 {
				t.Errorf("%d keys touched (err %v), want 2", n, err)
			}
		})
	}
}
