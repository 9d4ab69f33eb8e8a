package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/server"
)

// BuildService compiles the real binary (not `go run`, whose wrapper process would own
// a different pid and RSS) into dir, or returns prebuilt when it is set (a binary kept
// for perf symbols, say).
func BuildService(ctx context.Context, dir, prebuilt string) (string, error) {
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

// EnvFlag collects repeated KEY=VALUE flags: the benchmarks' -service-env, variables
// the service is started with (ServiceOptions.Env).
type EnvFlag map[string]string

func (e *EnvFlag) String() string { return fmt.Sprint(map[string]string(*e)) }

// Set adds one KEY=VALUE.
func (e *EnvFlag) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", kv)
	}
	if *e == nil {
		*e = EnvFlag{}
	}
	(*e)[k] = v
	return nil
}

// ServiceEnv is the inherited environment minus every variable the service reads
// (server.ConfigVars), plus set: a DEV=true or REDIS_URL in the caller's shell must not
// change what is measured.
func ServiceEnv(set map[string]string) []string {
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

// RunTool runs a one-shot subcommand and returns the first submatch of re in its stdout.
func RunTool(ctx context.Context, bin string, env []string, re *regexp.Regexp, args ...string) (string, error) {
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

// FreePort asks the kernel for an unused loopback port. Another process could take it
// before the service binds; on a benchmark machine that race is acceptable, and the
// service would fail loudly.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ServiceOptions say what StartService prepares.
type ServiceOptions struct {
	Bin      string // the agentregistry binary
	DBURL    string // PostgreSQL server URL; a scratch database is created and dropped
	Upstream string // LANGFLOW_URL
	// Env overrides or adds service environment variables.
	Env map[string]string
	// Prepare runs after migrate, seed, the lifted plan limits and the first key, and
	// before serve: a tool's own rows (tenants, more keys) go here.
	Prepare func(ctx context.Context, s *Service) error
}

// Service is the running agentregistry under test and what it needs.
type Service struct {
	*Child
	Base     string // http://host:port
	Key      string // a secret key of the demo config
	ConfigID string // the demo config
	DB       *sql.DB
	DSN      string            // the scratch database
	EnvVars  map[string]string // what the service was started with (besides the inherited environment)
	Env      []string
	drop     func()
}

var (
	configRE = regexp.MustCompile(`(?m)^demo config id: (\S+)`)
	keyRE    = regexp.MustCompile(`(?m)^key: (\S+)`)
)

// StartService prepares a scratch database (migrate, seed, plan limits lifted, one key,
// then opts.Prepare) and starts `agentregistry serve` against opts.Upstream in
// production mode (PostgreSQL, durable metering).
func StartService(ctx context.Context, opts ServiceOptions) (_ *Service, err error) {
	dsn, drop, err := dbtest.CreatePostgresDatabase(ctx, opts.DBURL, "bench")
	if err != nil {
		return nil, err
	}
	s := &Service{drop: drop, DSN: dsn}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	s.EnvVars = map[string]string{
		"DATABASE_URL":        dsn,
		"ADDR":                addr,
		"LANGFLOW_URL":        opts.Upstream,
		"APIKEY_SIGNING_KEYS": "bench:" + hex.EncodeToString(secret),
		// Required by the config; a tool that uses the portal points it at its own
		// issuer. Port 9 (discard) on loopback so nothing is ever reached otherwise.
		"OIDC_ISSUER": "http://127.0.0.1:9/realms/bench",
		"LOG_LEVEL":   "warn",
	}
	maps.Copy(s.EnvVars, opts.Env)
	s.Env = ServiceEnv(s.EnvVars)
	if _, err = RunTool(ctx, opts.Bin, s.Env, nil, "migrate"); err != nil {
		return nil, err
	}
	if s.ConfigID, err = RunTool(ctx, opts.Bin, s.Env, configRE, "seed"); err != nil {
		return nil, err
	}
	// database/sql's "postgres" driver is registered by internal/database, which dbtest
	// imports.
	if s.DB, err = sql.Open("postgres", dsn); err != nil {
		return nil, err
	}
	// 0 is "no limit" for all four (gateway/invoke.go: rpm and quota): the benchmarks
	// measure the invoke path, not the limiter's 429s.
	res, err := s.DB.ExecContext(ctx, `UPDATE plans SET rpm_per_key = 0, rpm_per_tenant = 0, requests_per_month = 0, tokens_per_month = 0`)
	if err != nil {
		return nil, fmt.Errorf("lift plan limits: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("lift plan limits: the seed wrote no plan")
	}
	if s.Key, err = RunTool(ctx, opts.Bin, s.Env, keyRE, "keys", "create", "--config", s.ConfigID, "--name", "bench"); err != nil {
		return nil, err
	}
	if opts.Prepare != nil {
		if err = opts.Prepare(ctx, s); err != nil {
			return nil, err
		}
	}
	if s.Child, s.Base, err = startServe(ctx, "service", opts.Bin, s.Env, addr); err != nil {
		return nil, err
	}
	return s, nil
}

// startServe runs `bin serve` with env (which must listen on addr) as a child named
// name, and waits until it is ready. It returns the child and its base URL; on failure
// the child is stopped.
func startServe(ctx context.Context, name, bin string, env []string, addr string) (*Child, string, error) {
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	c, _, err := StartChild(name, cmd, "agentregistry listening on ")
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if _, err := WaitReady(ctx, base+"/readyz", 60*time.Second); err != nil {
		c.Stop()
		return nil, "", err
	}
	return c, base, nil
}

// StartReplica starts a second `agentregistry serve` of bin on the service's database and
// configuration, on a port of its own: a replica, which shares the service's state
// through PostgreSQL (usage events travel between the two on its LISTEN/NOTIFY bus).
// The caller stops it; Close does not.
func (s *Service) StartReplica(ctx context.Context, bin string) (*Child, string, error) {
	addr, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	env := maps.Clone(s.EnvVars)
	env["ADDR"] = addr
	return startServe(ctx, "replica", bin, ServiceEnv(env), addr)
}

// Getenv reads the service's configuration as the service sees it (for
// server.LoadConfig in a Prepare).
func (s *Service) Getenv(k string) string {
	if v, ok := s.EnvVars[k]; ok {
		return v
	}
	return ""
}

// Close stops the service and drops its database.
func (s *Service) Close() {
	s.Child.Stop()
	if s.DB != nil {
		s.DB.Close()
	}
	if s.drop != nil {
		s.drop()
	}
}

// WaitReady polls url every 5ms until it answers 200 and returns how long that took; it
// gives up after limit.
func WaitReady(ctx context.Context, url string, limit time.Duration) (time.Duration, error) {
	c := NewClient(1)
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

// Runtime is what the service's Go runtime reported on its /metrics at one moment.
type Runtime struct {
	// GCCycles counts garbage collections (go_gc_duration_seconds_count). A collection's
	// concurrent mark takes CPU from everything else for its duration (about 100 ms with
	// 10,000 live subscriptions), so the count over a run says how many such windows its
	// calls met.
	GCCycles int64
	// AllocBytes counts the bytes allocated on the heap since the start
	// (go_memstats_alloc_bytes_total): the rate at which the collector has to keep up.
	// -1 when the exposition lacks it.
	AllocBytes float64
	// SchedWaits is go_sched_latencies_seconds: how long runnable goroutines waited for
	// a processor, as cumulative counts by upper bound. The runtime samples it (about one
	// transition in eight per goroutine) over all of the process's goroutines: long
	// waits over a run say its goroutines or the machine kept runnable ones waiting, not
	// which ones waited, and the counts are a fraction of all waits.
	SchedWaits []Bucket
	// SchedWaitCount counts all the (sampled) waits the histogram observed.
	SchedWaitCount uint64
}

// Bucket is one cumulative histogram bucket: Count observations at most UpperBound.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// WaitsOver reports how many sampled scheduling waits between prev and r were longer
// than bound, the largest bucket bound not above d: the exposition's buckets are about
// ×11 apart (client_golang coarsens the runtime's), so that is what they can tell. ok
// is false when either snapshot lacks the histogram, their buckets differ, a bucket's
// count went down (the service restarted in between), or no bound is at most d.
func (r Runtime) WaitsOver(prev Runtime, d time.Duration) (n uint64, bound time.Duration, ok bool) {
	if len(r.SchedWaits) == 0 || len(r.SchedWaits) != len(prev.SchedWaits) || r.SchedWaitCount < prev.SchedWaitCount {
		return 0, 0, false
	}
	at := -1
	for i, b := range r.SchedWaits {
		if b.UpperBound != prev.SchedWaits[i].UpperBound || ownCount(r.SchedWaits, i) < ownCount(prev.SchedWaits, i) {
			return 0, 0, false
		}
		if b.UpperBound <= d {
			at = i
		}
	}
	if at < 0 {
		return 0, 0, false
	}
	within := r.SchedWaits[at].Count - prev.SchedWaits[at].Count
	return r.SchedWaitCount - prev.SchedWaitCount - within, r.SchedWaits[at].UpperBound, true
}

// ownCount is how many observations bucket i of a cumulative histogram holds itself.
func ownCount(buckets []Bucket, i int) uint64 {
	if i == 0 {
		return buckets[0].Count
	}
	return buckets[i].Count - buckets[i-1].Count
}

// ReadRuntime reads the service's Go runtime figures from its /metrics.
func ReadRuntime(ctx context.Context, c *http.Client, base string) (Runtime, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return Runtime{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Runtime{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Runtime{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseRuntime(resp.Body)
}

// parseRuntime picks the Runtime figures out of a Prometheus text exposition. The
// collection count is required; the scheduling histogram is left empty when missing
// (a service built before it was exposed).
func parseRuntime(r io.Reader) (Runtime, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Runtime{}, fmt.Errorf("metrics: %w", err)
	}
	rt := Runtime{AllocBytes: -1}
	gc := families["go_gc_duration_seconds"]
	if gc == nil || len(gc.GetMetric()) == 0 || gc.GetMetric()[0].GetSummary() == nil {
		return Runtime{}, errors.New("metrics: no go_gc_duration_seconds summary")
	}
	rt.GCCycles = int64(gc.GetMetric()[0].GetSummary().GetSampleCount())
	if a := families["go_memstats_alloc_bytes_total"]; a != nil && len(a.GetMetric()) > 0 {
		rt.AllocBytes = a.GetMetric()[0].GetCounter().GetValue()
	}
	if sched := families["go_sched_latencies_seconds"]; sched != nil && len(sched.GetMetric()) > 0 {
		hist := sched.GetMetric()[0].GetHistogram()
		rt.SchedWaitCount = hist.GetSampleCount()
		for _, b := range hist.GetBucket() {
			bound := time.Duration(math.MaxInt64)
			if ub := b.GetUpperBound(); !math.IsInf(ub, 1) {
				bound = time.Duration(math.Round(ub * float64(time.Second)))
			}
			rt.SchedWaits = append(rt.SchedWaits, Bucket{UpperBound: bound, Count: b.GetCumulativeCount()})
		}
	}
	return rt, nil
}
