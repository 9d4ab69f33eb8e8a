package graph_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/auth/members"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
	"github.com/gsvdev/agentregistry/internal/langflow/provision"
)

// Limits the harness serves with, as production configures them.
const (
	maxComplexity = 1000
	maxDepth      = 12
	maxPageSize   = 100
)

// harness is the production HTTP stack (auth middleware with the DB-backed membership
// source in front of graph.NewHandler) behind httptest, on one test database whose client
// counts statements.
type harness struct {
	t       *testing.T
	db      *database.DB
	client  *ent.Client
	counter *dbtest.Counter
	issuer  *authtest.Issuer
	srv     *httptest.Server
	logs    *syncBuffer
	// graphStmts is the number of statements the GraphQL handler itself issued for the
	// last request: the authenticator's membership lookup (which runs before the handler,
	// on the same client) is not included. counter.Count() is the request's total.
	graphStmts atomic.Int64
}

type harnessOption func(*graph.Options)

func withoutIntrospection() harnessOption { return func(o *graph.Options) { o.Introspection = false } }

func newHarness(t *testing.T, driver string, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, counter: &dbtest.Counter{}, logs: &syncBuffer{}}
	h.db = dbtest.Open(t, driver, dbtest.WithCounter(h.counter))
	h.client = h.db.Client
	h.issuer = authtest.NewIssuer(t)
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	authn := auth.NewAuthenticator(h.issuer.Config(), members.New(h.client), logger)
	keyring, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "t", Secret: []byte(strings.Repeat("k", 32))}},
		apikey.KeyringOptions{Issuer: "test", Audience: "test/gateway"})
	if err != nil {
		t.Fatal(err)
	}
	_, lfSrv := echotest.Start(t, echoruntime.Options{})
	lf, err := langflow.New(langflow.Options{BaseURL: lfSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lf.Close)
	gopts := graph.Options{
		Services:      graph.Services{Keys: keys.New(h.client, keyring, nil), Provisioning: provision.New(h.client, lf)},
		Links:         graph.Links{PublicURL: "http://widget.test"},
		MaxComplexity: maxComplexity,
		MaxDepth:      maxDepth,
		MaxPageSize:   maxPageSize,
		Introspection: true,
		Authenticate:  authn.FromInitPayload,
		RefreshViewer: authn.Refresh,
		Logger:        logger,
	}
	for _, o := range opts {
		o(&gopts)
	}
	gh := graph.NewHandler(h.client, gopts)
	tap := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := h.counter.Count()
		gh.ServeHTTP(w, r)
		h.graphStmts.Store(int64(h.counter.Count() - before))
	})
	h.srv = httptest.NewServer(authn.Middleware(tap))
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs)
		}
	})
	return h
}

// token mints a Keycloak-shaped access token for subject holding the given realm roles.
func (h *harness) token(subject string, roles ...auth.Role) string {
	h.t.Helper()
	c := authtest.NewClaims().Subject(subject).Email(subject + "@example.org")
	for _, r := range roles {
		c.RealmRoles(string(r))
	}
	return h.issuer.Token(h.t, c.Map())
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string {
	c, _ := e.Extensions["code"].(string)
	return c
}

type gqlResponse struct {
	Status int
	Raw    string
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// hasData reports whether the response carries any data: a value other than null
// anywhere under data (a list of nulls, as nodes(ids:) answers, carries none).
func (r gqlResponse) hasData() bool {
	var v any
	if err := json.Unmarshal(r.Data, &v); err != nil {
		return len(strings.TrimSpace(string(r.Data))) > 0
	}
	var has func(any) bool
	has = func(v any) bool {
		switch x := v.(type) {
		case nil:
			return false
		case map[string]any:
			for _, e := range x {
				if has(e) {
					return true
				}
			}
			return false
		case []any:
			for _, e := range x {
				if has(e) {
					return true
				}
			}
			return false
		default:
			return true
		}
	}
	return has(v)
}

func (r gqlResponse) codes() []string {
	out := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		out[i] = e.code()
	}
	return out
}

// decode unmarshals data into v, failing the test on errors in the response.
func (r gqlResponse) decode(t *testing.T, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %s", r.Raw)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode data: %v\n%s", err, r.Raw)
	}
}

// post sends a query as JSON with the bearer token (none when token is "").
func (h *harness) post(token, query string, vars map[string]any) gqlResponse {
	h.t.Helper()
	return h.send(h.request(token, query, vars))
}

// request builds what post sends.
func (h *harness) request(token, query string, vars map[string]any) *http.Request {
	h.t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		h.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, h.srv.URL, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func (h *harness) send(req *http.Request) gqlResponse {
	h.t.Helper()
	h.counter.Reset()
	out, err := h.do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// do is send without the statement counter and without failing the test, for requests
// sent from other goroutines.
func (h *harness) do(req *http.Request) (gqlResponse, error) {
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return gqlResponse{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return gqlResponse{}, err
	}
	out := gqlResponse{Status: resp.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("response is not JSON (status %d): %w\n%s", resp.StatusCode, err, raw)
	}
	return out, nil
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// collectIDs returns every "id" string anywhere in a JSON document.
func collectIDs(data json.RawMessage) []string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "id" {
					out = append(out, s)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}
