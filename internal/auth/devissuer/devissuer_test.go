package devissuer_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
)

func newKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNewLoopbackOnly: a signing service must never be reachable from the network.
func TestNewLoopbackOnly(t *testing.T) {
	key := newKey(t)
	cases := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/realms/dev", true},
		{"http://127.9.8.7/realms/dev", true},
		{"http://localhost:8080/realms/dev", true},
		{"http://LOCALHOST/realms/dev", true},
		{"http://[::1]:8080/realms/dev", true},
		{"https://sso.example.test/realms/acme", false},
		{"http://10.0.0.1:8080/realms/dev", false},
		{"http://0.0.0.0:8080/realms/dev", false},
		{"http://[::]:8080/realms/dev", false},
		{"http://localhost.evil.test/realms/dev", false},
		{"http://127.0.0.1.nip.io/realms/dev", false},
		{"http://evil.test@127.0.0.1/realms/dev", false},
		{"ftp://127.0.0.1/realms/dev", false},
		{"/realms/dev", false},
		{"", false},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			_, err := devissuer.New(tc.url, key)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q) err = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
	if _, err := devissuer.New("http://127.0.0.1/realms/dev", nil); err == nil {
		t.Fatal("nil key accepted")
	}
}

func TestHandler(t *testing.T) {
	key := newKey(t)
	srv := httptest.NewUnstartedServer(nil)
	iss, err := devissuer.New("http://"+srv.Listener.Addr().String()+"/realms/dev/", key)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()
	srv.Start()
	defer srv.Close()
	if iss.URL() != srv.URL+"/realms/dev" {
		t.Fatalf("URL = %q: the trailing slash must go, iss must match discovery exactly", iss.URL())
	}

	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, m
	}
	code, disco := get("/realms/dev/.well-known/openid-configuration")
	if code != http.StatusOK || disco["issuer"] != iss.URL() ||
		disco["jwks_uri"] != iss.URL()+"/protocol/openid-connect/certs" {
		t.Fatalf("discovery %d %v", code, disco)
	}
	code, jwks := get("/realms/dev/protocol/openid-connect/certs")
	keys, _ := jwks["keys"].([]any)
	if code != http.StatusOK || len(keys) != 1 {
		t.Fatalf("jwks %d %v", code, jwks)
	}
	k := keys[0].(map[string]any)
	if k["kid"] != iss.KeyID() || k["kty"] != "RSA" || k["alg"] != "RS256" || k["d"] != nil {
		t.Fatalf("jwk = %v (must be the public RSA key with kid)", k)
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/realms/other/.well-known/openid-configuration", "/realms/dev/"} {
		if code, _ := get(p); code != http.StatusNotFound {
			t.Fatalf("GET %s = %d, want 404", p, code)
		}
	}
}

// TestDevToken: a dev token passes the production verifier with the role it names.
func TestDevToken(t *testing.T) {
	key := newKey(t)
	srv := httptest.NewUnstartedServer(nil)
	iss, err := devissuer.New("http://"+srv.Listener.Addr().String()+"/realms/dev", key)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()
	srv.Start()
	defer srv.Close()

	cases := []struct {
		name       string
		roleClient string
	}{
		{"client role", "portal-api"},
		{"realm role", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := auth.NewAuthenticator(auth.Config{
				IssuerURL: iss.URL(), ClientIDs: []string{"portal-web"}, RoleClient: tc.roleClient,
			}, nil, nil)
			tok, err := iss.DevToken(auth.RolePlatformAdmin, "dev-admin", "admin@example.org", "portal-web", tc.roleClient, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			v, err := a.Authenticate(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if v.Subject != "dev-admin" || v.Email != "admin@example.org" || v.Name != "admin" ||
				!slices.Equal(v.Roles, []auth.Role{auth.RolePlatformAdmin}) {
				t.Fatalf("viewer = %+v", v)
			}
			if d := time.Until(v.Expiry); d < 59*time.Minute || d > time.Hour {
				t.Fatalf("expiry in %v, want 1h", d)
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "dev-issuer.pem")
	k1, err := devissuer.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := devissuer.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("reloaded key differs: dev tokens would not survive a restart")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devissuer.LoadOrCreateKey(bad); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Fatalf("corrupt key file: err = %v, want an error (never silently replaced)", err)
	}
}
