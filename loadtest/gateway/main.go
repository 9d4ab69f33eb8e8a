// Command gateway is the invoke gateway's load benchmark. It starts three
// processes on loopback — a Langflow-compatible echo upstream that answers
// at once, the real agentregistry binary (PostgreSQL, durable metering) in
// front of it, and a bare httputil.ReverseProxy to the same upstream as the
// baseline — then drives each target closed-loop (maximum throughput at
// -concurrency) and open-loop (fixed -rate), and prints figures and ratios.
// It asserts nothing about timings: the machine it runs on is shared and
// noisy, so the numbers are for people to compare, not for CI to judge.
//
// Separate processes keep the service's RSS its own and stop the generator
// from sharing a Go runtime (scheduler, GC) with what it measures.
//
//	go run ./loadtest/gateway [-duration 10s] [-concurrency 64] [-rate 1000] [-db URL]
//	go run ./loadtest/gateway -role startup   # serve --dev start time and idle RSS
//
// Linux only for the memory figures (/proc). Every run ends by itself: each
// phase has a fixed duration and the helper processes exit with it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

func main() {
	role := flag.String("role", "", "") // hidden: upstream | proxy (children) | startup
	upstream := flag.String("upstream", "", "")
	lifetime := flag.Duration("lifetime", 30*time.Minute, "")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured run")
	concurrency := flag.Int("concurrency", 64, "closed-loop workers")
	rate := flag.Int("rate", 1000, "open-loop requests per second")
	dbURL := flag.String("db", h.EnvOr("BENCH_DATABASE_URL", os.Getenv("TEST_DATABASE_URL")), "PostgreSQL server URL; a scratch database is created and dropped")
	runs := flag.Int("startup-runs", 5, "how many starts -role startup times")
	flag.StringVar(&prebuilt, "bin", "", "use this agentregistry binary instead of building one (e.g. to keep it for perf symbols)")
	flag.Var(&serviceEnv, "service-env", "KEY=VALUE set in the service's environment, repeatable (e.g. USAGE_ASYNC=true to see what durable metering costs)")
	flag.Parse()

	var err error
	switch *role {
	case "upstream", "proxy":
		err = h.ServeRole(*role, *upstream, *lifetime)
	case "startup":
		err = benchStartup(*runs)
	case "":
		err = benchGateway(*dbURL, *duration, *concurrency, *rate)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest/gateway:", err)
		os.Exit(1)
	}
}

func benchGateway(dbURL string, d time.Duration, conc, rate int) error {
	if dbURL == "" {
		return fmt.Errorf("no PostgreSQL: set BENCH_DATABASE_URL or TEST_DATABASE_URL, or pass -db")
	}
	if d <= 0 || conc <= 0 || rate <= 0 {
		return fmt.Errorf("-duration, -concurrency and -rate must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// 6 measured runs, 2 warm-ups, setup and teardown.
	lifetime := 8*d + 5*time.Minute

	tmp, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "building agentregistry…")
	bin, err := h.BuildService(ctx, tmp, prebuilt)
	if err != nil {
		return err
	}

	up, upURL, err := h.StartRole("upstream", lifetime)
	if err != nil {
		return err
	}
	defer up.Stop()
	px, pxURL, err := h.StartRole("proxy", lifetime, "-upstream", upURL)
	if err != nil {
		return err
	}
	defer px.Stop()
	fmt.Fprintln(os.Stderr, "preparing the scratch database and starting the service…")
	svc, err := startService(ctx, bin, dbURL, upURL)
	if err != nil {
		return err
	}
	defer svc.close()
	pid := svc.Pid()

	loadBefore := h.LoadAvg()

	// Idle: after /readyz, before any invoke; a moment for start-up garbage
	// to settle so the figure is the resting footprint.
	time.Sleep(time.Second)
	idleRSS, idleErr := h.ProcStatusKB(pid, "VmRSS")

	gw := h.Target{
		Name: "gateway",
		URL:  svc.Base + "/api/agent-gateway/invoke/",
		Body: []byte(`{"input":"hello"}`),
		Header: http.Header{
			"Authorization": {"Bearer " + svc.Key},
			"Content-Type":  {"application/json"},
		},
		TrackIDs: true,
	}
	// What the gateway itself sends Langflow for the same call (flow run
	// with our session id), so the proxy forwards an equivalent body.
	lfBody, _ := json.Marshal(map[string]any{
		"input_value": "hello", "input_type": "chat", "output_type": "chat",
		"session_id": "bench-session", "tweaks": map[string]any{},
	})
	bare := h.Target{
		Name:   "bare proxy",
		URL:    pxURL + "/api/v1/run/x",
		Body:   lfBody,
		Header: http.Header{"Content-Type": {"application/json"}},
	}

	client := h.NewClient(max(conc, 1024))
	gw2xx, gwLost := 0, 0
	var gwIDs []string
	count := func(r *h.Result) *h.Result {
		if r.Target == gw.Name {
			gw2xx += r.OK
			gwLost += r.Statuses[0]
			gwIDs = append(gwIDs, r.IDs...)
		}
		return r
	}

	// Warm-up: connection pools, the key and config caches, the JIT-less
	// but still real first-call costs (page faults, pool growth). Not shown.
	warm := min(d, 2*time.Second)
	for _, t := range []h.Target{bare, gw} {
		r := count(h.ClosedLoop(ctx, client, t, conc, warm))
		if r.OK == 0 {
			return fmt.Errorf("warm-up of %s: no 2xx answer (%s)", t.Name, r.FirstErr)
		}
	}

	// Baseline, gateway, baseline again: the machine is noisy, and two
	// baselines around the gateway show how much the floor moved meanwhile.
	var results []*h.Result
	// CPU the serving process (the service, or the bare proxy) used per call in each
	// run: steadier than latency on a shared machine, as other work on the machine
	// delays a process without adding to its CPU time.
	cpuPerCall := map[int]time.Duration{}
	probed, probeMissing := 0, 0
	// The probe's pace under load: 50 calls a second, 5% on top of the default rate.
	const probeEvery = 20 * time.Millisecond
	for _, mode := range []string{"closed", "open"} {
		for _, t := range []h.Target{bare, gw, bare} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// While the gateway is under load, one extra caller checks that
			// each 2xx it gets is already metered: a backed-up recorder is
			// where answering before committing would show.
			var probe chan [3]int
			if t.Name == gw.Name {
				probe = make(chan [3]int, 1)
				go func() {
					c, m, err := svc.probeDurability(ctx, client, gw, d, probeEvery, 0)
					if err != nil {
						fmt.Fprintln(os.Stderr, "durability probe:", err)
					}
					probe <- [3]int{c, m}
				}()
			}
			proc := px.Pid()
			if t.Name == gw.Name {
				proc = pid
			}
			cpuBefore, cpuErr := h.CPUTime(proc)
			var r *h.Result
			if mode == "closed" {
				r = h.ClosedLoop(ctx, client, t, conc, d)
			} else {
				r = h.OpenLoop(ctx, client, []h.Target{t}, rate, d, nil)
			}
			calls := r.OK + r.Errs
			if probe != nil {
				p := <-probe
				probed, probeMissing = probed+p[0], probeMissing+p[1]
				gw2xx += p[0] // the probe's answers are metered too
				calls += p[0]
			}
			cpuAfter, cpuErr2 := h.CPUTime(proc)
			if cpuErr == nil && cpuErr2 == nil && calls > 0 {
				cpuPerCall[len(results)] = time.Duration((cpuAfter - cpuBefore) / float64(calls) * float64(time.Second))
			}
			results = append(results, count(r))
			fmt.Fprintf(os.Stderr, "  %-10s %-14s %8.0f req/s  p99 %s\n", r.Target, r.Mode, r.RPS(), h.FmtDur(r.Pct(99)))
		}
	}
	peakRSS, peakErr := h.ProcStatusKB(pid, "VmHWM")
	// And once more at rest, one call at a time.
	if c, m, err := svc.probeDurability(ctx, client, gw, 30*time.Second, 0, 200); err != nil {
		fmt.Fprintln(os.Stderr, "durability probe:", err)
	} else {
		probed, probeMissing, gw2xx = probed+c, probeMissing+m, gw2xx+c
	}
	rows, rows2xx, rowsErr := svc.usageRows(ctx)
	missing, missErr := svc.missingRecords(ctx, gwIDs)

	printTable(results)
	fmt.Println()
	fmt.Printf("machine: %d CPUs, load average before %s, after %s (other work on the machine skews every figure)\n",
		runtime.NumCPU(), loadBefore, h.LoadAvg())
	closedGW, closedBare := results[1], []*h.Result{results[0], results[2]}
	openGW := results[4]
	bareRPS := (closedBare[0].RPS() + closedBare[1].RPS()) / 2
	fmt.Printf("ratio gateway/bare (throughput, closed loop): %.2f  (vs bare run 1: %.2f, run 2: %.2f)\n",
		closedGW.RPS()/bareRPS, closedGW.RPS()/closedBare[0].RPS(), closedGW.RPS()/closedBare[1].RPS())
	fmt.Printf("gateway p99 at %d req/s: %s  (bare: %s, %s)\n", rate, h.FmtDur(openGW.Pct(99)),
		h.FmtDur(results[3].Pct(99)), h.FmtDur(results[5].Pct(99)))
	fmt.Printf("CPU per call, closed loop: service %s, bare proxy %s and %s; at %d req/s: service %s, bare proxy %s and %s\n",
		fmtCPU(cpuPerCall, 1), fmtCPU(cpuPerCall, 0), fmtCPU(cpuPerCall, 2), rate,
		fmtCPU(cpuPerCall, 4), fmtCPU(cpuPerCall, 3), fmtCPU(cpuPerCall, 5))
	fmt.Printf("service RSS: idle before load %s, peak (VmHWM) %s\n", h.FmtKB(idleRSS, idleErr), h.FmtKB(peakRSS, peakErr))
	switch {
	case rowsErr != nil:
		fmt.Printf("usage_records: %v\n", rowsErr)
	case missErr != nil:
		fmt.Printf("usage_records: %v\n", missErr)
	default:
		// Equal counts are expected; a client that gave up (timeout, no
		// status) on a call the service still completed leaves a row with no
		// 2xx seen here, so only missing ids are a durability failure.
		verdict := "equal"
		switch {
		case missing > 0:
			verdict = fmt.Sprintf("DURABILITY FAILURE: %d 2xx answers have no usage record", missing)
		case rows2xx < gw2xx:
			verdict = fmt.Sprintf("DURABILITY FAILURE: %d fewer rows than 2xx answers (records lost, or still being written after their answers)", gw2xx-rows2xx)
		case rows2xx > gw2xx:
			verdict = fmt.Sprintf("not equal, but every 2xx answer's request id has a row; the %d extra rows are calls the client gave up on (%d without an answer)", rows2xx-gw2xx, gwLost)
		}
		fmt.Printf("usage_records: %d rows (%d with 2xx status) vs %d gateway 2xx answers (warm-up and probes included): %s\n",
			rows, rows2xx, gw2xx, verdict)
	}
	probeVerdict := "every one was already committed when its answer arrived"
	if probeMissing > 0 {
		probeVerdict = fmt.Sprintf("DURABILITY FAILURE: %d answered before their usage record was committed", probeMissing)
	}
	fmt.Printf("durability probe: %d 2xx answers looked up the moment they arrived (under load and at rest): %s\n", probed, probeVerdict)
	for _, r := range results {
		if r.Errs > 0 {
			fmt.Printf("errors in %s %s: %d (dropped %d), statuses %v, first: %s\n", r.Target, r.Mode, r.Errs, r.Dropped, r.Statuses, r.FirstErr)
		}
	}
	return nil
}

// fmtCPU prints run i's CPU per call, or "n/a" where /proc could not tell.
func fmtCPU(perCall map[int]time.Duration, i int) string {
	if d, ok := perCall[i]; ok {
		return d.Round(time.Microsecond).String()
	}
	return "n/a"
}

func printTable(results []*h.Result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Target, r.Mode, r.OK+r.Errs, r.Errs, r.RPS(),
			h.FmtDur(r.Pct(50)), h.FmtDur(r.Pct(90)), h.FmtDur(r.Pct(99)), h.FmtDur(r.Pct(100)))
	}
	tw.Flush()
}
