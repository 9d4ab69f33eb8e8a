package main

// Binary-level tests: TestMain builds the real agentregistry binary once, and each test
// runs it as a separate process with its own working directory, DATA_DIR and loopback
// port, as an operator or an orchestrator would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
)

const testVersion = "v0.0.0-binary-test"

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentregistry-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "agentregistry")
	args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=" + testVersion}
	if raceEnabled {
		// The server under test is race-checked too: a data race exits with code 66.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is an io.Writer that a test may read while a process writes to it.
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

// proc is one running agentregistry process.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	exitCode       int
	exitedAt       time.Time
}

// baseEnv is the environment every process gets: nothing inherited from the test's own
// environment (a stray DATABASE_URL must not leak in), a private HOME and working dir.
func baseEnv(dir string, vars map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "LOG_FORMAT=text",
		// A race-enabled binary otherwise sleeps 1s before exiting, which would be
		// mistaken for slow shutdowns.
		"GORACE=atexit_sleep_ms=0"}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// start runs the binary in dir with only vars (plus baseEnv) in its environment.
func start(t *testing.T, dir string, vars map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Dir = dir
	p.cmd.Env = baseEnv(dir, vars)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.exitedAt = time.Now()
		p.exitCode = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.exitCode = ee.ExitCode()
		} else if err != nil {
			p.exitCode = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr (tail):\n%s", strings.Join(args, " "), p.stdout, tail(p.stderr.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.exitCode, true
	case <-time.After(timeout):
		return 0, false
	}
}

// runBin runs the binary to completion.
func runBin(t *testing.T, dir string, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := start(t, dir, vars, args...)
	code, ok := p.wait(60 * time.Second)
	if !ok {
		t.Fatalf("agentregistry %s did not exit within 60s", strings.Join(args, " "))
	}
	return p.stdout.String(), p.stderr.String(), code
}

// bannerLine waits until stdout has a line "<name>: <value>" and returns the value.
func (p *proc) bannerLine(name string, timeout time.Duration) string {
	p.t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\S+)$`)
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited (code %d) before printing %q", p.exitCode, name)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q line within %s", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outputValue returns the value of the line "<name>: <value>" in out.
func outputValue(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", name, out)
	}
	return m[1]
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// freshClient never reuses a connection, so every request dials anew.
var freshClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(addr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := freshClient.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited with code %d before becoming ready", p.exitCode)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not ready within %s (last: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type invokeResult struct {
	at        time.Time // when the answer (or error) arrived
	status    int
	requestID string
	output    string
	err       error
}

func invoke(addr, key string) invokeResult {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/agent-gateway/invoke/", strings.NewReader(`{"input":"hello"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := freshClient.Do(req)
	if err != nil {
		return invokeResult{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	var body struct {
		Output    string `json:"output"`
		RequestID string `json:"request_id"`
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return invokeResult{status: resp.StatusCode, requestID: body.RequestID, output: body.Output, at: time.Now()}
}

// signingSecret is a fresh 64-hex-character signing secret.
func signingSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// postgresDB creates an empty (unmigrated) PostgreSQL database for one test.
func postgresDB(t *testing.T) string {
	t.Helper()
	dsn, drop, err := dbtest.CreatePostgresDatabase(context.Background(), dbtest.PostgresURL(t), "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return dsn
}

// prodEnv is a complete non-dev configuration on PostgreSQL.
func prodEnv(t *testing.T, dir, dsn, addr, langflowURL string) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":        dsn,
		"ADDR":                addr,
		"DATA_DIR":            filepath.Join(dir, "data"),
		"APIKEY_SIGNING_KEYS": "t:" + signingSecret(),
		"OIDC_ISSUER":         "http://127.0.0.1:9/realms/t",
		"LANGFLOW_URL":        langflowURL,
		"SHUTDOWN_TIMEOUT":    "10s",
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func isConnRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// isConnReset: a connection the kernel queued just before the listener closed is reset,
// which refuses it as promptly as ECONNREFUSED.
func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// serveSetup prepares a serve process: it returns its env and args, a key that invokes
// (read once the process runs), and the database to look usage records up in once the
// process is gone.
type serveSetup func(t *testing.T, dir, addr, langflowURL string) (env map[string]string, args []string, key func(*proc) string, usageDB func() (*database.DB, error))

// serveSetups: production mode on PostgreSQL (seeded, key from the CLI) and dev mode on
// SQLite (key from the banner).
var serveSetups = []struct {
	name  string
	setup serveSetup
}{
	{"postgres", func(t *testing.T, dir, addr, lf string) (map[string]string, []string, func(*proc) string, func() (*database.DB, error)) {
		dsn := postgresDB(t)
		env := with(prodEnv(t, dir, dsn, addr, lf), "MIGRATE_ON_START", "true")
		out, errOut, code := runBin(t, dir, env, "seed")
		if code != 0 {
			t.Fatalf("seed exited %d: %s", code, errOut)
		}
		cfg := outputValue(t, out, "demo config id")
		out, errOut, code = runBin(t, dir, env, "keys", "create", "--config", cfg, "--name", "shutdown")
		if code != 0 {
			t.Fatalf("keys create exited %d: %s", code, errOut)
		}
		key := outputValue(t, out, "key")
		return env, []string{"serve"}, func(*proc) string { return key },
			func() (*database.DB, error) {
				return database.Open(context.Background(), "postgres", dsn, database.Options{})
			}
	}},
	{"dev sqlite", func(t *testing.T, dir, addr, lf string) (map[string]string, []string, func(*proc) string, func() (*database.DB, error)) {
		file := filepath.Join(dir, "data", "dev.db")
		env := map[string]string{"ADDR": addr, "DATA_DIR": filepath.Join(dir, "data"), "DATABASE_URL": "sqlite:" + file,
			"LANGFLOW_URL": lf}
		return env, []string{"serve", "--dev"}, func(p *proc) string { return p.bannerLine("dev api key", 30*time.Second) },
			func() (*database.DB, error) {
				return database.Open(context.Background(), "sqlite", "file:"+file, database.Options{})
			}
	}},
}

// TestGracefulShutdown sends SIGTERM while an invoke is in flight: the invoke still
// completes and is metered, new connections are refused at once, and the process exits 0
// well within SHUTDOWN_TIMEOUT.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const runtimeDelay = time.Second
	const shutdownTimeout = 10 * time.Second
	for _, tc := range serveSetups {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			addr := freeAddr(t)
			rt, lf := echotest.Start(t, echoruntime.Options{})
			env, args, keyOf, usageDB := tc.setup(t, dir, addr, lf.URL)
			env = with(env, "SHUTDOWN_TIMEOUT", shutdownTimeout.String())
			p := start(t, dir, env, args...)
			key := keyOf(p)
			p.waitReady(addr, 30*time.Second)

			// Warm-up: the key and config are known and the runtime answers quickly.
			if r := invoke(addr, key); r.status != http.StatusOK {
				t.Fatalf("warm-up invoke: %d %v", r.status, r.err)
			}
			rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Delay: runtimeDelay})
			calls := rt.Calls()

			res := make(chan invokeResult, 1)
			started := time.Now()
			go func() { res <- invoke(addr, key) }()
			// In flight: the gateway has called the runtime, which sits on it.
			for rt.Calls() == calls {
				if time.Since(started) > 5*time.Second {
					t.Fatal("the invoke never reached the runtime")
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(200*time.Millisecond - time.Since(started))
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled := time.Now()

			// New connections are refused (not left hanging) while the invoke still runs.
			refusedAfter := time.Duration(-1)
			for time.Since(signalled) < 2*time.Second {
				c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := c.Get("http://" + addr + "/healthz")
				switch {
				case err == nil:
					resp.Body.Close() // accepted before the signal was handled: try again
					time.Sleep(10 * time.Millisecond)
					continue
				case isConnReset(err) || errors.Is(err, io.EOF):
					continue // queued as the listener closed; the next dial must be refused
				case !isConnRefused(err):
					t.Fatalf("request after SIGTERM: %v, want connection refused", err)
				}
				refusedAfter = time.Since(signalled)
				break
			}
			if refusedAfter < 0 {
				t.Fatal("connections were still accepted 2s after SIGTERM")
			}
			select {
			case r := <-res:
				t.Fatalf("the in-flight invoke ended (%d, %v) before new connections were refused; the test proves nothing", r.status, r.err)
			default:
			}

			r := <-res
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("in-flight invoke: status %d, err %v; want 200", r.status, r.err)
			}
			if r.requestID == "" || !strings.Contains(r.output, "hello") {
				t.Errorf("in-flight invoke answered %+v", r)
			}
			code, ok := p.wait(shutdownTimeout + 5*time.Second)
			if !ok {
				t.Fatalf("process still running %s after SIGTERM", shutdownTimeout+5*time.Second)
			}
			exitAfter := p.exitedAt.Sub(signalled)
			if code != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0", code)
			}
			if exitAfter > shutdownTimeout {
				t.Errorf("exited %s after SIGTERM, beyond SHUTDOWN_TIMEOUT %s", exitAfter, shutdownTimeout)
			}
			if !strings.Contains(p.stderr.String(), "shutdown complete") {
				t.Error(`no "shutdown complete" in the log`)
			}
			t.Logf("%s: refused new connections %s after SIGTERM; in-flight invoke took %s (runtime delay %s); process exited %s after SIGTERM, %s after the invoke's answer",
				tc.name, refusedAfter.Round(time.Millisecond), r.at.Sub(started).Round(time.Millisecond), runtimeDelay,
				exitAfter.Round(time.Millisecond), p.exitedAt.Sub(r.at).Round(time.Millisecond))

			db, err := usageDB()
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			q := "SELECT status FROM usage_records WHERE request_id = $1"
			if db.Driver == database.DriverSQLite {
				q = "SELECT status FROM usage_records WHERE request_id = ?"
			}
			var status int
			if err := db.SQL.QueryRow(q, r.requestID).Scan(&status); err != nil {
				t.Fatalf("usage record of the in-flight invoke %s: %v", r.requestID, err)
			}
			if status != http.StatusOK {
				t.Errorf("usage record status %d, want 200", status)
			}
		})
	}
}

// TestShutdownDeadline: a request that outlives SHUTDOWN_TIMEOUT does not keep the process
// alive past it, and the call is still metered (every call is, failed ones included).
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = time.Second
	for _, tc := range serveSetups {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			addr := freeAddr(t)
			rt, lf := echotest.Start(t, echoruntime.Options{})
			env, args, keyOf, usageDB := tc.setup(t, dir, addr, lf.URL)
			p := start(t, dir, with(env, "SHUTDOWN_TIMEOUT", shutdownTimeout.String()), args...)
			key := keyOf(p)
			p.waitReady(addr, 30*time.Second)
			if r := invoke(addr, key); r.status != http.StatusOK {
				t.Fatalf("warm-up invoke: %d %v", r.status, r.err)
			}
			rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Delay: 20 * time.Second})
			calls := rt.Calls()
			res := make(chan invokeResult, 1)
			go func() { res <- invoke(addr, key) }()
			for deadline := time.Now().Add(5 * time.Second); rt.Calls() == calls; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the invoke never reached the runtime")
				}
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled := time.Now()
			code, ok := p.wait(shutdownTimeout + 5*time.Second)
			if !ok {
				t.Fatalf("still running %s after SIGTERM with SHUTDOWN_TIMEOUT=%s", shutdownTimeout+5*time.Second, shutdownTimeout)
			}
			exitAfter := p.exitedAt.Sub(signalled)
			// The deadline covers the HTTP shutdown and the drains; allow for process exit.
			if exitAfter > shutdownTimeout+time.Second {
				t.Errorf("exited %s after SIGTERM, want about SHUTDOWN_TIMEOUT (%s)", exitAfter, shutdownTimeout)
			}
			r := <-res
			t.Logf("%s: request outliving the deadline ended with (%d, %v); process exited with code %d %s after SIGTERM",
				tc.name, r.status, r.err, code, exitAfter.Round(time.Millisecond))
			if r.status == http.StatusOK {
				t.Error("a request still waiting on the runtime was answered 200")
			}

			db, err := usageDB()
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.SQL.QueryRow("SELECT COUNT(*) FROM usage_records").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Errorf("%d usage records, want 2: the warm-up and the call cut off by the shutdown deadline", n)
			}
		})
	}
}

// anyCode accepts any exit code.
const anyCode = -1

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{"version", []string{"version"}, 0, testVersion + "\n", nil},
		{"help", []string{"help"}, 0, "usage: agentregistry", nil},
		{"unknown command", []string{"frobnicate"}, 1, "", []string{"usage: agentregistry", `unknown command "frobnicate"`}},
		{"no command", nil, 1, "", []string{"usage: agentregistry", "no command given"}},
		{"unknown serve flag", []string{"serve", "--nope"}, 1, "", []string{"flag provided but not defined: -nope"}},
		// The keys subcommand is checked only after the configuration is loaded and the
		// database opened, so these print configuration errors instead of the keys usage.
		{"unknown keys subcommand", []string{"keys", "list"}, 1, "", []string{"agentregistry keys create", `unknown subcommand "list"`}},
		{"keys help (as the usage suggests)", []string{"keys", "-h"}, anyCode, "", []string{"agentregistry keys create"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out, errOut, code := runBin(t, dir, nil, tc.args...)
			if tc.wantCode != anyCode && code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			if tc.wantCode == 0 && tc.wantStdout == testVersion+"\n" && out != tc.wantStdout {
				t.Errorf("stdout %q, want %q", out, tc.wantStdout)
			}
			if !strings.Contains(out, tc.wantStdout) {
				t.Errorf("stdout %q lacks %q", out, tc.wantStdout)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(errOut, w) && (tc.wantCode != anyCode || !strings.Contains(out, w)) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if tc.wantCode > 0 && out != "" {
				t.Errorf("a failing command wrote to stdout: %q", out)
			}
		})
	}
}

// TestBadConfiguration: every problem is listed at once and no secret is ever printed.
func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	const (
		signing  = "kid1:SIGNING-SECRET-0123456789-abcdefghijklmnop"
		langflow = "LANGFLOW-SECRET-42-zyxwvu"
		dbPass   = "DB-PASSWORD-SECRET-777"
	)
	secrets := []string{"SIGNING-SECRET-0123456789-abcdefghijklmnop", langflow, dbPass}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // every line must be reported
	}{
		{"several invalid variables", []string{"serve"}, map[string]string{
			"ADDR": "nonsense", "DATABASE_URL": "mysql://x", "LOG_LEVEL": "loud", "SHUTDOWN_TIMEOUT": "-1s",
			"APIKEY_SIGNING_KEYS": signing, "LANGFLOW_API_KEY": langflow,
		}, []string{"ADDR:", "DATABASE_URL:", "LOG_LEVEL:", "SHUTDOWN_TIMEOUT:", "OIDC_ISSUER: required"}},
		{"signing secret too short", []string{"migrate"}, map[string]string{
			"APIKEY_SIGNING_KEYS": "kid1:" + dbPass, "OIDC_ISSUER": "http://127.0.0.1:9/realms/t", "REDIS_URL": "http://nope",
		}, []string{"APIKEY_SIGNING_KEYS: kid \"kid1\": secret is", "REDIS_URL:"}},
		{"signing secret without kid", []string{"keys", "create"}, map[string]string{
			"APIKEY_SIGNING_KEYS": signing + "," + langflow + "-padding-padding-padding", "OIDC_ISSUER": "ftp://x",
		}, []string{"APIKEY_SIGNING_KEYS: entry 2 is not kid:secret", "OIDC_ISSUER:"}},
		{"database password in a bad URL", []string{"serve"}, map[string]string{
			"DATABASE_URL": "postgres://user:" + dbPass + "@/db", "APIKEY_SIGNING_KEYS": signing,
			"OIDC_ISSUER": "http://127.0.0.1:9/realms/t", "MAX_BODY_BYTES": "lots",
		}, []string{"DATABASE_URL:", "MAX_BODY_BYTES:"}},
		// Valid configuration, unreachable database: the configuration is logged at start
		// and the connection error is printed; neither may carry a secret.
		{"valid config, database down", []string{"serve"}, map[string]string{
			"DATABASE_URL": "postgres://user:" + dbPass + "@127.0.0.1:1/db?connect_timeout=2", "APIKEY_SIGNING_KEYS": signing,
			"OIDC_ISSUER": "http://127.0.0.1:9/realms/t", "LANGFLOW_URL": "http://127.0.0.1:9", "LANGFLOW_API_KEY": langflow,
			"LOG_LEVEL": "debug",
		}, []string{"agentregistry:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := with(tc.env, "DATA_DIR", filepath.Join(dir, "data"), "ADDR", tc.env["ADDR"])
			if env["ADDR"] == "" {
				env["ADDR"] = freeAddr(t)
			}
			out, errOut, code := runBin(t, dir, env, tc.args...)
			if code == 0 {
				t.Fatalf("exit code 0 with a bad configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			for _, s := range secrets {
				if strings.Contains(out+errOut, s) {
					t.Errorf("output contains the secret %q:\nstdout: %s\nstderr: %s", s, out, errOut)
				}
			}
		})
	}
}

// TestMigrate: migrate twice on a fresh PostgreSQL database reports one version; serve
// without MIGRATE_ON_START starts on it, and refuses an unmigrated database.
func TestMigrate(t *testing.T) {
	t.Parallel()
	rt, lf := echotest.Start(t, echoruntime.Options{})
	_ = rt
	versionRe := regexp.MustCompile(`(?m)^database schema at version (\d+)$`)

	t.Run("migrate twice then serve", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		dsn := postgresDB(t)
		addr := freeAddr(t)
		env := prodEnv(t, dir, dsn, addr, lf.URL)
		var versions []string
		for i := range 2 {
			out, errOut, code := runBin(t, dir, env, "migrate")
			if code != 0 {
				t.Fatalf("migrate #%d exited %d: %s", i+1, code, errOut)
			}
			m := versionRe.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("migrate #%d printed %q, want the schema version", i+1, out)
			}
			if n, _ := strconv.Atoi(m[1]); n < 1 {
				t.Errorf("migrate #%d reports version %s", i+1, m[1])
			}
			versions = append(versions, m[1])
		}
		if versions[0] != versions[1] {
			t.Errorf("versions %v differ between runs", versions)
		}
		p := start(t, dir, env, "serve")
		p.waitReady(addr, 30*time.Second)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, ok := p.wait(15 * time.Second); !ok || code != 0 {
			t.Errorf("serve after SIGTERM: code %d, exited %v", code, ok)
		}
	})

	t.Run("serve refuses an unmigrated database", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		dsn := postgresDB(t)
		addr := freeAddr(t)
		for _, migrateOnStart := range []string{"", "false"} {
			out, errOut, code := runBin(t, dir, with(prodEnv(t, dir, dsn, addr, lf.URL), "MIGRATE_ON_START", migrateOnStart), "serve")
			if code == 0 {
				t.Fatalf("serve started on an unmigrated database (MIGRATE_ON_START=%q)", migrateOnStart)
			}
			if !strings.Contains(errOut, "agentregistry migrate") {
				t.Errorf("MIGRATE_ON_START=%q: stderr does not say to run `agentregistry migrate`:\n%s", migrateOnStart, errOut)
			}
			if strings.Contains(out, "listening") {
				t.Errorf("stdout says it listened: %q", out)
			}
		}
		// Nothing was created behind the operator's back.
		db, err := database.Open(context.Background(), "postgres", dsn, database.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var tables int
		if err := db.SQL.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'tenants'`).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Error("serve without MIGRATE_ON_START created the schema")
		}
	})
}

// TestDevBanner: serve --dev prints every credential line, and refuses to listen beyond
// loopback.
func TestDevBanner(t *testing.T) {
	t.Parallel()
	t.Run("banner", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		addr := freeAddr(t)
		p := start(t, dir, map[string]string{"ADDR": addr}, "serve", "--dev")
		for _, tc := range []struct {
			name string
			re   string
		}{
			{"dev admin token", `^eyJ[\w-]+\.[\w-]+\.[\w-]+$`},
			{"dev provider token", `^eyJ[\w-]+\.[\w-]+\.[\w-]+$`},
			{"dev customer token", `^eyJ[\w-]+\.[\w-]+\.[\w-]+$`},
			{"dev api key", `^ar_sk_live_[\w-]+\.[\w-]+\.[\w-]+$`},
			{"dev publishable key", `^ar_pk_live_[\w-]+\.[\w-]+\.[\w-]+$`},
			{"dev config id", `^cfg_[0-9A-Za-z]+$`},
			{"playground", `^http://` + regexp.QuoteMeta(addr) + `/playground$`},
		} {
			v := p.bannerLine(tc.name, 30*time.Second)
			if !regexp.MustCompile(tc.re).MatchString(v) {
				t.Errorf("%s: %q does not match %s", tc.name, v, tc.re)
			}
		}
		p.waitReady(addr, 10*time.Second)
		// The printed key works against the built-in echo runtime.
		if r := invoke(addr, p.bannerLine("dev api key", time.Second)); r.status != http.StatusOK || !strings.Contains(r.output, "hello") {
			t.Errorf("invoke with the dev api key: %+v", r)
		}
		// Data lives in ./data of the working directory by default.
		if _, err := os.Stat(filepath.Join(dir, "data", "agentregistry.db")); err != nil {
			t.Errorf("dev database: %v", err)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code, ok := p.wait(15 * time.Second); !ok || code != 0 {
			t.Errorf("dev serve after SIGTERM: code %d, exited %v", code, ok)
		}
	})
	for _, host := range []string{"0.0.0.0", "[::]"} {
		t.Run("refuses "+host, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, port, _ := net.SplitHostPort(freeAddr(t))
			addr := host + ":" + port
			out, errOut, code := runBin(t, dir, map[string]string{"ADDR": addr}, "serve", "--dev")
			if code == 0 {
				t.Fatal("serve --dev started on a non-loopback address")
			}
			// Refused up front, naming the offending ADDR (not only later by the issuer). The
			// error is the "agentregistry: ..." line; the start-up log also names ADDR.
			var errLine string
			for _, l := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(l, "agentregistry: ") {
					errLine = l
				}
			}
			if !strings.Contains(errLine, "loopback") || !strings.Contains(errLine, addr) {
				t.Errorf("error %q does not explain the loopback rule for ADDR %s:\n%s", errLine, addr, errOut)
			}
			if strings.Contains(out, "dev api key") || strings.Contains(out, "token") {
				t.Errorf("credentials printed although serve refused to start:\n%s", out)
			}
		})
	}
}

// TestKeysCommand: keys create/rotate/revoke from a separate process act on a running
// server.
func TestKeysCommand(t *testing.T) {
	t.Parallel()
	for _, bus := range []string{"postgres", "redis"} {
		t.Run(bus, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dsn := postgresDB(t)
			addr := freeAddr(t)
			_, lf := echotest.Start(t, echoruntime.Options{})
			env := with(prodEnv(t, dir, dsn, addr, lf.URL), "MIGRATE_ON_START", "true")
			if bus == "redis" {
				u := os.Getenv("TEST_REDIS_URL")
				if u == "" {
					if os.Getenv("CI") == "true" {
						t.Fatal("CI=true but TEST_REDIS_URL is not set")
					}
					t.Skip("TEST_REDIS_URL not set")
				}
				env["REDIS_URL"] = u
			}
			out, errOut, code := runBin(t, dir, env, "seed")
			if code != 0 {
				t.Fatalf("seed: %d %s", code, errOut)
			}
			cfg := outputValue(t, out, "demo config id")
			p := start(t, dir, env, "serve")
			p.waitReady(addr, 30*time.Second)

			keys := func(args ...string) (string, string) {
				t.Helper()
				out, errOut, code := runBin(t, dir, env, append([]string{"keys"}, args...)...)
				if code != 0 {
					t.Fatalf("keys %v: exit %d: %s", args, code, errOut)
				}
				return outputValue(t, out, "key id"), outputValue(t, out, "key")
			}
			expect := func(what, key string, want int) {
				t.Helper()
				if r := invoke(addr, key); r.status != want {
					t.Errorf("%s: invoke status %d (err %v), want %d", what, r.status, r.err, want)
				}
			}

			t.Run("create prints a working key once", func(t *testing.T) {
				out, errOut, code := runBin(t, dir, env, "keys", "create", "--config", cfg, "--name", "x")
				if code != 0 {
					t.Fatalf("keys create: %d %s", code, errOut)
				}
				key := outputValue(t, out, "key")
				if strings.Count(out+errOut, key) != 1 {
					t.Errorf("the key appears %d times in the output, want once", strings.Count(out+errOut, key))
				}
				if !strings.HasPrefix(key, "ar_sk_live_") {
					t.Errorf("key %q is not a secret key", key)
				}
				expect("new key", key, http.StatusOK)
			})

			t.Run("create validates its flags", func(t *testing.T) {
				for _, args := range [][]string{
					{"keys", "create", "--name", "x"},
					{"keys", "create", "--config", cfg},
					{"keys", "create", "--config", cfg, "--name", "x", "--scopes", "admin:all"},
					{"keys", "revoke"},
					{"keys", "rotate", "--id", "nonsense"},
				} {
					out, _, code := runBin(t, dir, env, args...)
					if code == 0 || strings.Contains(out, "ar_sk_live_") {
						t.Errorf("%v: exit %d, stdout %q; want a failure and no key", args, code, out)
					}
				}
			})

			t.Run("rotate keeps the old key during the grace", func(t *testing.T) {
				for _, tc := range []struct {
					grace   string
					wantOld int
				}{
					{"1h", http.StatusOK},
					{"0s", http.StatusUnauthorized},
				} {
					oldID, oldKey := keys("create", "--config", cfg, "--name", "rot-"+tc.grace)
					newID, newKey := keys("rotate", "--id", oldID, "--grace", tc.grace)
					if newID == oldID || newKey == oldKey {
						t.Fatalf("rotate returned the old key")
					}
					expect("rotated-in key (grace "+tc.grace+")", newKey, http.StatusOK)
					expect("rotated-out key (grace "+tc.grace+")", oldKey, tc.wantOld)
				}
			})

			t.Run("revoke", func(t *testing.T) {
				id, key := keys("create", "--config", cfg, "--name", "doomed")
				// Used first, so the server's verifier has it cached.
				expect("before revocation", key, http.StatusOK)
				expect("before revocation (cached)", key, http.StatusOK)
				out, errOut, code := runBin(t, dir, env, "keys", "revoke", "--id", id)
				if code != 0 || !strings.Contains(out, "revoked "+id) {
					t.Fatalf("keys revoke: %d %q %s", code, out, errOut)
				}
				revoked := time.Now()
				// The verifier's CacheTTL backstop is 30s; the revocation bus (PostgreSQL NOTIFY
				// or Redis) must make it near-immediate, so the bound is well under the TTL. Poll
				// 4 times a second at first, then once a second, to stay near the plan's 60
				// requests/minute per key; a 429 still means the key was accepted.
				const bound = 5 * time.Second
				var last invokeResult
				for {
					last = invoke(addr, key)
					if last.status == http.StatusUnauthorized {
						t.Logf("%s bus: a CLI revocation took effect on the running server after %s", bus, time.Since(revoked).Round(time.Millisecond))
						break
					}
					if last.status != http.StatusOK && last.status != http.StatusTooManyRequests {
						t.Fatalf("revoked key: status %d (err %v), want 200 then 401", last.status, last.err)
					}
					if time.Since(revoked) > bound {
						t.Fatalf("a revoked key still works %s after `keys revoke`", bound)
					}
					if time.Since(revoked) < 2*time.Second {
						time.Sleep(250 * time.Millisecond)
					} else {
						time.Sleep(time.Second)
					}
				}
				// Revoking again is fine and changes nothing.
				if _, errOut, code := runBin(t, dir, env, "keys", "revoke", "--id", id); code != 0 {
					t.Errorf("second revoke: %d %s", code, errOut)
				}
				expect("after a second revoke", key, http.StatusUnauthorized)
			})
		})
	}
}
