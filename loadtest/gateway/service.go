package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/server"
)

// prebuilt is the -bin flag: a binary to measure instead of building one.
var prebuilt string

// buildService compiles the real binary (not `go run`, whose wrapper
// process would own a different pid and RSS) into dir.
func buildService(ctx context.Context, dir string) (string, error) {
	if prebuilt != "" {
		return prebuilt, nil
	}
	bin := filepath.Join(dir, "agentregistry")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/gsvdev/agentregistry/cmd/agentregistry")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %w", err)
	}
	return bin, nil
}

// serviceEnv is the inherited environment minus every variable the service
// reads (server.ConfigVars), plus set: a DEV=true or REDIS_URL in the
// caller's shell must not change what is measured.
func serviceEnv(set map[string]string) []string {
	drop := map[string]bool{}
	for _, v := range server.ConfigVars() {
		drop[v.Name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// runTool runs a one-shot subcommand and returns the first submatch of re
// in its stdout.
func runTool(ctx context.Context, bin string, env []string, re *regexp.Regexp, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("agentregistry %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	if re == nil {
		return "", nil
	}
	m := re.FindStringSubmatch(out.String())
	if m == nil {
		return "", fmt.Errorf("agentregistry %s: no %s in output:\n%s", strings.Join(args, " "), re, out.String())
	}
	return m[1], nil
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before the service binds; on a benchmark machine that
// race is acceptable, and the service would fail loudly.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// service is the running agentregistry under test and what it needs.
type service struct {
	*child
	base     string
	key      string
	configID string
	db       *sql.DB
	drop     func()
}

var (
	configRE = regexp.MustCompile(`(?m)^demo config id: (\S+)`)
	keyRE    = regexp.MustCompile(`(?m)^key: (\S+)`)
)

// startService prepares a scratch database (migrate, seed, limits lifted,
// one key) and starts `agentregistry serve` against upstream.
func startService(ctx context.Context, bin, dbURL, upstream string) (_ *service, err error) {
	dsn, drop, err := dbtest.CreatePostgresDatabase(ctx, dbURL, "bench")
	if err != nil {
		return nil, err
	}
	s := &service{drop: drop}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	env := serviceEnv(map[string]string{
		"DATABASE_URL":        dsn,
		"ADDR":                addr,
		"LANGFLOW_URL":        upstream,
		"APIKEY_SIGNING_KEYS": "bench:" + hex.EncodeToString(secret),
		// Required by the config but only used by the portal, never by the
		// gateway; port 9 (discard) on loopback so nothing is ever reached.
		"OIDC_ISSUER": "http://127.0.0.1:9/realms/bench",
		"LOG_LEVEL":   "warn",
	})
	if _, err = runTool(ctx, bin, env, nil, "migrate"); err != nil {
		return nil, err
	}
	if s.configID, err = runTool(ctx, bin, env, configRE, "seed"); err != nil {
		return nil, err
	}
	// database/sql's "postgres" driver is registered by internal/database,
	// which dbtest imports.
	if s.db, err = sql.Open("postgres", dsn); err != nil {
		return nil, err
	}
	// 0 is "no limit" for all four (gateway/invoke.go: rpm and quota): the
	// benchmark measures the invoke path, not the limiter's 429s.
	res, err := s.db.ExecContext(ctx, `UPDATE plans SET rpm_per_key = 0, rpm_per_tenant = 0, requests_per_month = 0, tokens_per_month = 0`)
	if err != nil {
		return nil, fmt.Errorf("lift plan limits: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("lift plan limits: the seed wrote no plan")
	}
	if s.key, err = runTool(ctx, bin, env, keyRE, "keys", "create", "--config", s.configID, "--name", "bench"); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	if s.child, _, err = startChild("service", cmd, "agentregistry listening on "); err != nil {
		return nil, err
	}
	s.base = "http://" + addr
	if _, err = waitReady(ctx, s.base+"/readyz", 60*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *service) usageRows(ctx context.Context) (total, ok int, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299) FROM usage_records`).Scan(&total, &ok)
	return total, ok, err
}

// missingRecords counts the ids (X-Request-Id of 2xx answers) that have no
// usage record: with durable metering it must be 0 whatever else happened.
func (s *service) missingRecords(ctx context.Context, ids []string) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, request_id FROM usage_records`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var id, rid string
		if err := rows.Scan(&id, &rid); err != nil {
			return 0, err
		}
		have[id], have[rid] = true, true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	missing := 0
	for _, id := range ids {
		if id == "" || !have[id] {
			missing++
		}
	}
	return missing, nil
}

// probeDurability sends invokes one at a time until d has passed (or n
// were sent, when n > 0) and, the moment each 2xx arrives, looks its
// request id up in usage_records. With durable metering the row is
// committed before the answer is written, so it must already be there; a
// recorder that answers first and writes later passes the end-of-run row
// count but fails here. It returns the 2xx answers checked and how many had
// no row yet.
func (s *service) probeDurability(ctx context.Context, c *http.Client, t target, d time.Duration, n int) (checked, missing int, err error) {
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end) && (n <= 0 || i < n) && ctx.Err() == nil; i++ {
		code, id, derr := do(ctx, c, t)
		if derr != nil || code/100 != 2 {
			continue
		}
		var found bool
		if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM usage_records WHERE id = $1 OR request_id = $1)`, id).Scan(&found); err != nil {
			return checked, missing, err
		}
		checked++
		if !found {
			missing++
		}
	}
	return checked, missing, nil
}

func (s *service) close() {
	s.child.stop()
	if s.db != nil {
		s.db.Close()
	}
	if s.drop != nil {
		s.drop()
	}
}

// waitReady polls url every 5ms until it answers 200 and returns how long
// that took; it gives up after limit.
func waitReady(ctx context.Context, url string, limit time.Duration) (time.Duration, error) {
	c := newClient(1)
	c.Timeout = time.Second
	start := time.Now()
	for time.Since(start) < limit {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s not ready within %s", url, limit)
}
