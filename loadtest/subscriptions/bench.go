package main

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gsvdev/agentregistry/internal/auth"
	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

type options struct {
	subscribers, tenants, rate int
	duration                   time.Duration
	providerShare, configShare float64
	dbURL, bin                 string
	hold, recent, control      bool
	replica                    bool      // hold the subscriptions on a second replica
	env                        h.EnvFlag // -service-env: set in every replica's environment
}

// serviceEnv is what the service is started with: the -service-env variables, then the
// bench's own login settings, which the subscribers need whatever those say.
func serviceEnv(extra h.EnvFlag, issuer string) map[string]string {
	env := map[string]string{}
	maps.Copy(env, extra)
	env["OIDC_ISSUER"], env["OIDC_TENANT_CLAIM"] = issuer, ""
	return env
}

// planned is one subscription of the plan: whose calls it should see.
type planned struct {
	tenant int // -1: provider-wide (every call)
	kind   string
}

// call is one 2xx invoke of the loaded run.
type call struct {
	id       string
	answered int64 // Unix ns
}

func bench(o options) (outcome, error) {
	switch {
	case o.dbURL == "":
		return outcome{}, fmt.Errorf("no PostgreSQL: set BENCH_DATABASE_URL or TEST_DATABASE_URL, or pass -db")
	case o.subscribers <= 0 || o.tenants <= 0 || o.rate <= 0 || o.duration <= 0:
		return outcome{}, fmt.Errorf("-subscribers, -tenants, -rate and -duration must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Before any child starts: they inherit it, the service included.
	fdLimit, fdErr := h.RaiseFileLimit()
	// 3 measured runs, a warm-up, opening the subscriptions, setup and teardown.
	lifetime := 5*o.duration + 15*time.Minute

	tmp, err := os.MkdirTemp("", "bench-subscriptions-")
	if err != nil {
		return outcome{}, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "building agentregistry…")
	bin, err := h.BuildService(ctx, tmp, o.bin)
	if err != nil {
		return outcome{}, err
	}
	up, upURL, err := h.StartRole("upstream", lifetime)
	if err != nil {
		return outcome{}, err
	}
	defer up.Stop()
	iss, err := startIssuer()
	if err != nil {
		return outcome{}, err
	}
	defer iss.close()

	// The plan: provider-wide subscriptions first, the rest spread round-robin over the
	// tenants, every configShare-th of those also naming the tenant's config.
	nProv := 0
	if o.providerShare > 0 {
		nProv = max(1, int(math.Round(float64(o.subscribers)*o.providerShare)))
	}
	nProv = min(nProv, o.subscribers)
	plan := make([]planned, o.subscribers)
	perTenant := make([]int, o.tenants)
	cfgEvery := 0
	if o.configShare > 0 {
		cfgEvery = max(1, int(math.Round(1/o.configShare)))
	}
	for i := range plan {
		switch {
		case i < nProv:
			plan[i] = planned{tenant: -1, kind: "provider"}
		default:
			k := i - nProv
			t := k % o.tenants
			plan[i] = planned{tenant: t, kind: "tenant"}
			if cfgEvery > 0 && (k/o.tenants)%cfgEvery == cfgEvery-1 {
				plan[i].kind = "config"
			}
			perTenant[t]++
		}
	}
	buyerSubjects := subjectsFor(slicesMax(perTenant))
	providerSubjects := 0
	if nProv > 0 {
		providerSubjects = subjectsFor(nProv)
	}

	fmt.Fprintf(os.Stderr, "preparing the scratch database (%d tenants) and starting the service…\n", o.tenants)
	var w world
	svc, err := h.StartService(ctx, h.ServiceOptions{
		Bin: bin, DBURL: o.dbURL, Upstream: upURL,
		Env: serviceEnv(o.env, iss.URL()),
		Prepare: func(ctx context.Context, s *h.Service) error {
			return prepare(ctx, s, &w, o.tenants, buyerSubjects, providerSubjects)
		},
	})
	if err != nil {
		return outcome{}, err
	}
	defer svc.Close()
	pid := svc.Pid()
	// Where the subscriptions are held: in the gateway's own process, or with -replica in
	// a second replica on the same database, which leaves the gateway's process none of
	// their work (the README's "Live usage" section says why one would deploy so). It starts
	// before the first run, so that every run has the same processes.
	subsBase, holder, holderName := svc.Base, pid, "service"
	var replica *h.Child
	if o.replica {
		fmt.Fprintln(os.Stderr, "starting a second replica to hold the subscriptions…")
		var base string
		if replica, base, err = svc.StartReplica(ctx, bin); err != nil {
			return outcome{}, err
		}
		defer replica.Stop()
		subsBase, holder, holderName = base, replica.Pid(), "replica"
	}
	loadBefore := h.LoadAvg()

	targets := make([]h.Target, len(w.Tenants))
	for i, t := range w.Tenants {
		targets[i] = h.Target{
			Name: "invoke",
			URL:  svc.Base + "/api/agent-gateway/invoke/",
			Body: []byte(`{"input":"hello"}`),
			Header: http.Header{
				"Authorization": {"Bearer " + t.Key},
				"Content-Type":  {"application/json"},
			},
		}
	}
	client := h.NewClient(1024)

	// Warm-up: every key verified and cached, pools grown. Not shown.
	if r := h.OpenLoop(ctx, client, targets, o.rate, min(o.duration, 3*time.Second), nil); r.OK == 0 {
		return outcome{}, fmt.Errorf("warm-up: no 2xx answer (%s)", r.FirstErr)
	}
	runs := []*run{}
	measure := func(label string, onAnswer func(h.Answer)) *run {
		cpu0, _ := h.CPUTime(pid)
		mb0, mt0, _ := h.MachineCPU()
		io0, ioErr0 := h.IOStall()
		cw0, cwErr0 := h.CPUWait()
		rt0, rtErr0 := h.ReadRuntime(ctx, client, svc.Base)
		t0 := time.Now()
		r := h.OpenLoop(ctx, client, targets, o.rate, o.duration, onAnswer)
		ru := &run{label: label, res: r, start: t0, end: time.Now()}
		if cpu1, err := h.CPUTime(pid); err == nil {
			ru.cores = (cpu1 - cpu0) / ru.end.Sub(t0).Seconds()
		}
		if mb1, mt1, err := h.MachineCPU(); err == nil && mt1 > mt0 {
			ru.machine = (mb1 - mb0) / (mt1 - mt0)
		}
		if io1, err := h.IOStall(); err == nil && ioErr0 == nil {
			ru.ioStall = io1 - io0
		} else {
			ru.ioStall = -1
		}
		ru.cpuWait = -1
		if cw1, err := h.CPUWait(); err == nil && cwErr0 == nil {
			ru.cpuWait = float64(cw1-cw0) / float64(ru.end.Sub(t0))
		}
		ru.gcs, ru.longWaits = -1, -1
		if rt1, err := h.ReadRuntime(ctx, client, svc.Base); err == nil && rtErr0 == nil {
			ru.gcs = rt1.GCCycles - rt0.GCCycles
			ru.allocRate = -1
			if rt0.AllocBytes >= 0 && rt1.AllocBytes >= rt0.AllocBytes {
				ru.allocRate = (rt1.AllocBytes - rt0.AllocBytes) / ru.end.Sub(t0).Seconds()
			}
			if n, bound, ok := rt1.WaitsOver(rt0, time.Millisecond); ok {
				ru.longWaits, ru.longWaitBound = int64(n), bound
			}
		}
		runs = append(runs, ru)
		fmt.Fprintf(os.Stderr, "  %-36s %6.0f req/s  p99 %s  service CPU %.2f cores, machine %.0f%% busy\n", label, r.RPS(), h.FmtDur(r.Pct(99)), ru.cores, 100*ru.machine)
		return ru
	}
	fmt.Fprintln(os.Stderr, "invokes without subscribers…")
	before := measure("invoke, no subscribers (before)", nil)
	if ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}

	// The spec of connections: each subject's subscriptions in connections of at most
	// subsPerConn, the subjects of a tenant taking turns.
	time.Sleep(time.Second) // the last calls' NOTIFYs are in before the first loads
	sp, conns, err := buildSpec(subsBase, iss, &w, plan)
	if err != nil {
		return outcome{}, err
	}
	sp.Query = queryCounts
	if o.recent {
		sp.Query = queryRecent
	}
	specPath, outPath := filepath.Join(tmp, "spec.json"), filepath.Join(tmp, "report.gob")
	b, _ := json.Marshal(sp)
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return outcome{}, err
	}
	runtime.GC()
	rssBefore, rssBeforeErr := h.ProcStatusKB(holder, "VmRSS")
	fmt.Fprintf(os.Stderr, "opening %d subscriptions on %d connections…\n", o.subscribers, conns)
	self, err := os.Executable()
	if err != nil {
		return outcome{}, err
	}
	cmd := exec.Command(self, "-role", "subscribers", "-lifetime", lifetime.String(), "-spec", specPath, "-out", outPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return outcome{}, err
	}
	opened := time.Now()
	subs, line, err := h.StartChildWithin("subscribers", cmd, "subscribed ", 10*time.Minute)
	if err != nil {
		return outcome{}, err
	}
	defer subs.Stop()
	openTook := time.Since(opened)
	var okSubs, failedSubs int
	fmt.Sscan(line, &okSubs, &failedSubs)
	time.Sleep(2 * time.Second) // let the opening's garbage be collected before reading RSS
	rssAfter, rssAfterErr := h.ProcStatusKB(holder, "VmRSS")
	fmt.Fprintf(os.Stderr, "  %d open, %d failed in %s\n", okSubs, failedSubs, h.FmtDur(openTook))

	if o.hold {
		fmt.Fprintf(os.Stderr, "service pid %d, subscriptions held by the %s (pid %d): loaded run starts in 3s\n", pid, holderName, holder)
		time.Sleep(3 * time.Second)
	}
	var mu sync.Mutex
	calls := make([][]call, len(w.Tenants))
	other := 0
	subCPU0, _ := h.CPUTime(subs.Pid())
	holderCPU0, holderErr0 := h.CPUTime(holder)
	writes0, writesErr := h.WriteSyscalls(holder)
	loaded := measure(fmt.Sprintf("invoke, %d subscribers", okSubs), func(a h.Answer) {
		mu.Lock()
		defer mu.Unlock()
		if a.Err == nil && a.Code/100 == 2 {
			calls[a.Target] = append(calls[a.Target], call{id: a.ID, answered: a.Answered.UnixNano()})
		} else {
			other++
		}
	})
	subCPU1, _ := h.CPUTime(subs.Pid())
	holderCPU1, holderErr1 := h.CPUTime(holder)
	writes1, writesErr2 := h.WriteSyscalls(holder)
	// Deliveries of the last calls arrive within an interval or two when the service
	// keeps up; when it does not they lag by seconds, and a short tail would report
	// them as never delivered rather than late.
	tail := 10 * time.Second
	time.Sleep(tail)
	peakRSS, peakErr := h.ProcStatusKB(holder, "VmHWM")
	rssLoaded, rssLoadedErr := h.ProcStatusKB(holder, "VmRSS")
	stdin.Close()
	if err := subs.Wait(2 * time.Minute); err != nil {
		return outcome{}, fmt.Errorf("subscribers: %w", err)
	}
	rep, err := readReport(outPath)
	if err != nil {
		return outcome{}, err
	}
	fmt.Fprintln(os.Stderr, "invokes without subscribers again…")
	time.Sleep(2 * time.Second) // the closed connections' goroutines wind down
	after := measure("invoke, no subscribers (after)", nil)
	subCores := (subCPU1 - subCPU0) / loaded.end.Sub(loaded.start).Seconds()
	// The replica's whole CPU is the subscriptions' (it serves nothing else).
	replicaCores := -1.0
	if replica != nil && holderErr0 == nil && holderErr1 == nil {
		replicaCores = (holderCPU1 - holderCPU0) / loaded.end.Sub(loaded.start).Seconds()
	}

	// The control run (control.go): the loaded run's extra CPU, burnt by another process.
	var control *run
	var spunAsked, spun float64
	extra := loaded.cores - (before.cores+after.cores)/2 + subCores
	if replicaCores >= 0 {
		extra += replicaCores
	}
	if o.control && extra > 0.01 && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "invokes without subscribers, %.2f cores burnt elsewhere…\n", extra)
		// The control is extra: without it the runs above still stand.
		if sp, err := startSpinner(extra, lifetime); err != nil {
			fmt.Fprintln(os.Stderr, "  no control run:", err)
		} else {
			time.Sleep(time.Second)
			c0, err0 := h.CPUTime(sp.Pid())
			control = measure(fmt.Sprintf("invoke, no subscribers, %.2f cores spun", extra), nil)
			c1, err1 := h.CPUTime(sp.Pid())
			sp.Stop()
			spunAsked, spun = extra, -1
			if err0 == nil && err1 == nil {
				spun = (c1 - c0) / control.end.Sub(control.start).Seconds()
			}
		}
	}

	if ctx.Err() != nil {
		// Interrupted: the runs since were cut short, and their figures mean nothing.
		return outcome{}, ctx.Err()
	}

	// Delivery delays.
	d := analyze(plan, calls, rep)
	msgs, secs := 0, 0
	for s := loaded.start.Unix() + 1; s < loaded.end.Unix(); s++ {
		msgs += rep.Hist[s]
		secs++
	}

	sel := "day { requests } recent { requestID } resynced"
	if !o.recent {
		sel = "day { requests } resynced"
	}
	fmt.Printf("subscriptions benchmark: %d subscribers (%d provider-wide, %d by tenant+config, rest by tenant) over %d tenants, %d invokes/s for %s; selection { %s }\n",
		o.subscribers, nProv, countKind(plan, "config"), o.tenants, o.rate, o.duration, sel)
	if o.replica {
		fmt.Println("subscriptions held by a second replica on the same database; the invokes go to the first, which holds none")
	}
	if len(o.env) > 0 {
		fmt.Printf("service environment (-service-env): %s\n", o.env.String())
	}
	fmt.Printf("machine: %d CPUs, load average before %s, after %s; open-file limit %s\n",
		runtime.NumCPU(), loadBefore, h.LoadAvg(), fmtLimit(fdLimit, fdErr))
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	waitsHeader := "sampled waits"
	for _, ru := range runs {
		if ru.longWaits >= 0 {
			waitsHeader = "sampled waits >" + h.FmtDur(ru.longWaitBound)
			break
		}
	}
	fmt.Fprintln(tw, "run\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\tservice CPU\tservice GCs\t"+waitsHeader+"\tmachine busy\tCPU wait\tI/O stall\t")
	for _, ru := range runs {
		r := ru.res
		stall := "n/a"
		if ru.ioStall >= 0 {
			stall = h.FmtDur(ru.ioStall)
		}
		gcs := "n/a"
		if ru.gcs >= 0 {
			gcs = strconv.FormatInt(ru.gcs, 10)
			if ru.allocRate >= 0 {
				gcs += fmt.Sprintf(" (%.1f MiB/s)", ru.allocRate/(1<<20))
			}
		}
		cpuWait := "n/a"
		if ru.cpuWait >= 0 {
			cpuWait = fmt.Sprintf("%.1f%%", 100*ru.cpuWait)
		}
		waits := "n/a"
		if ru.longWaits >= 0 {
			waits = strconv.FormatInt(ru.longWaits, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%.2f cores\t%s\t%s\t%.0f%%\t%s\t%s\t\n", ru.label, r.OK+r.Errs, r.Errs, r.RPS(),
			h.FmtDur(r.Pct(50)), h.FmtDur(r.Pct(90)), h.FmtDur(r.Pct(99)), h.FmtDur(r.Pct(100)), ru.cores, gcs, waits, 100*ru.machine, cpuWait, stall)
	}
	tw.Flush()
	fmt.Println("(CPU wait: the share of the run during which at least one runnable task of the machine waited for a CPU, from")
	fmt.Println(" /proc/pressure/cpu: each invoke crosses several processes (client, service, Langflow stand-in, PostgreSQL), and")
	fmt.Println(" every wake-up that finds both CPUs taken waits for one, whatever the service does inside;")
	fmt.Println(" I/O stall: how long all non-idle tasks of the machine were stalled on I/O at the same time, from /proc/pressure/io;")
	fmt.Println(" invokes wait for PostgreSQL's commit, so a disk stall shows in their p99 and max whoever else runs;")
	fmt.Println(" service GCs: garbage collections the service ran during the run (and what it allocated), from its /metrics: each one's concurrent")
	fmt.Println(" mark takes CPU from the calls for its duration, which grows with the subscriptions' live heap;")
	fmt.Println(" sampled waits: waits for a processor longer than that, of any of the service's runnable goroutines (the")
	fmt.Println(" subscriptions' own too when it holds them), from its go_sched_latencies_seconds, which samples about one in eight)")
	fmt.Println()
	base := (before.res.Pct(99) + after.res.Pct(99)) / 2
	out := outcome{ratio: -1, spread: -1, control: -1}
	for _, ru := range runs {
		out.failed += ru.res.Errs
	}
	if base > 0 {
		out.ratio = float64(loaded.res.Pct(99)) / float64(base)
	}
	fmt.Printf("invoke p99 with subscribers / without: %.2f  (%s vs %s and %s)\n",
		out.ratio, h.FmtDur(loaded.res.Pct(99)), h.FmtDur(before.res.Pct(99)), h.FmtDur(after.res.Pct(99)))
	// The two runs without subscribers measure the same thing: how far apart they are is
	// how finely one run of this machine can tell a ratio from 1.
	if lo, hi := min(before.res.Pct(99), after.res.Pct(99)), max(before.res.Pct(99), after.res.Pct(99)); lo > 0 {
		out.spread = float64(hi) / float64(lo)
		fmt.Printf("invoke p99 of the two runs without subscribers, higher / lower: %.2f  (the same work twice: a ratio with subscribers no further from 1 than this is within the machine's noise)\n",
			out.spread)
	}
	if control != nil {
		measured := "n/a"
		if spun >= 0 {
			measured = fmt.Sprintf("%.2f", spun)
		}
		if base > 0 {
			out.control = float64(control.res.Pct(99)) / float64(base)
		}
		fmt.Printf("invoke p99 with another process burning the loaded run's extra CPU (%.2f cores asked, %s measured) / without: %.2f  (%s)\n",
			spunAsked, measured, out.control, h.FmtDur(control.res.Pct(99)))
	}
	fmt.Printf("subscriptions open: %d of %d (%d failed) on %d connections of %d subjects, in %s\n",
		okSubs, o.subscribers, failedSubs, conns, buyerSubjects*o.tenants+providerSubjects, h.FmtDur(openTook))
	fmt.Printf("delivery delay, answer -> first message reflecting the call, over %d (subscriber, call) pairs:\n", d.pairs)
	fmt.Printf("  p50 %s  p90 %s  p99 %s  max %s  (never delivered: %d; message before the answer: %d, counted as 0)\n",
		h.FmtDur(d.pct(50)), h.FmtDur(d.pct(90)), h.FmtDur(d.pct(99)), h.FmtDur(d.pct(100)), d.missed, d.early)
	for _, k := range []string{"tenant", "config", "provider"} {
		if kd := d.byKind[k]; kd != nil && kd.pairs > 0 {
			fmt.Printf("  %-8s p50 %s  p99 %s  over %d pairs, %d never delivered\n", k, h.FmtDur(kd.pct(50)), h.FmtDur(kd.pct(99)), kd.pairs, kd.missed)
		}
	}
	if secs > 0 {
		fmt.Printf("messages delivered: %.0f/s during the loaded run (%d subscribers; at most 2/s each at the 500ms interval); resynced (reader too slow): %d\n",
			float64(msgs)/float64(secs), okSubs, d.resynced)
	}
	if secs > 0 && writesErr == nil && writesErr2 == nil && msgs > 0 {
		// Invokes write too (answers, Langflow, PostgreSQL), a few per call.
		perSec := float64(writes1-writes0) / loaded.end.Sub(loaded.start).Seconds()
		includes := "invoke answers, Langflow and PostgreSQL included"
		if replica != nil {
			includes = "its database connections included"
		}
		fmt.Printf("%s write syscalls: %.0f/s during the loaded run, %.2f per message delivered (%s)\n",
			holderName, perSec, perSec/(float64(msgs)/float64(secs)), includes)
	}
	fmt.Printf("subscriber process CPU during the loaded run: %.2f cores\n", subCores)
	if replicaCores >= 0 {
		fmt.Printf("replica CPU during the loaded run: %.2f cores (the gateway's process: the table's service CPU)\n", replicaCores)
	}
	perSub := "n/a"
	if rssBeforeErr == nil && rssAfterErr == nil && okSubs > 0 {
		perSub = fmt.Sprintf("%.1f KiB", float64(rssAfter-rssBefore)/float64(okSubs))
	}
	fmt.Printf("%s RSS: before subscribing %s, after %s -> %s per subscriber; after the loaded run %s, peak (VmHWM) %s\n",
		holderName, h.FmtKB(rssBefore, rssBeforeErr), h.FmtKB(rssAfter, rssAfterErr), perSub, h.FmtKB(rssLoaded, rssLoadedErr), h.FmtKB(peakRSS, peakErr))
	if other > 0 {
		fmt.Printf("loaded run: %d invokes without a 2xx answer are left out of the delays\n", other)
	}
	if len(rep.ConnErrors) > 0 {
		fmt.Printf("connection errors: %d, first: %s\n", len(rep.ConnErrors), rep.ConnErrors[0])
	}
	if e := d.firstErr; e != "" {
		fmt.Printf("subscription errors: %d, first: %s\n", d.subErrs, e)
	}
	for _, ru := range runs {
		if r := ru.res; r.Errs > 0 {
			fmt.Printf("errors in %s: %d (dropped %d), statuses %v, first: %s\n", ru.label, r.Errs, r.Dropped, r.Statuses, r.FirstErr)
		}
	}
	return out, nil
}

type run struct {
	label      string
	res        *h.Result
	start, end time.Time
	cores      float64       // service CPU over the run
	machine    float64       // share of the whole machine busy over the run (everyone's work)
	ioStall    time.Duration // machine-wide full I/O stall over the run (harness.IOStall); -1 unknown
	cpuWait    float64       // share of the run some runnable task waited for a CPU (harness.CPUWait); -1 unknown
	gcs        int64         // the service's garbage collections during the run (harness.Runtime); -1 unknown
	allocRate  float64       // bytes the service allocated per second over the run; -1 unknown
	// longWaits counts the sampled waits of the service's runnable goroutines longer than
	// longWaitBound for a processor during the run (harness.Runtime.WaitsOver); -1 unknown.
	longWaits     int64
	longWaitBound time.Duration
}

func buildSpec(base string, iss *issuer, w *world, plan []planned) (spec, int, error) {
	// Each subject's subscriptions, in plan order.
	bySubject := map[string][]subSpec{}
	var order []string
	turn := make([]int, len(w.Tenants))
	prov := 0
	for i, p := range plan {
		var subj, filter string
		switch {
		case p.tenant < 0:
			subj = w.Providers[(prov/(subsPerConn*connsPerSubject))%len(w.Providers)]
			prov++
			filter = fmt.Sprintf(`{providerTenantID: %q}`, w.ProviderTenant)
		default:
			t := w.Tenants[p.tenant]
			subj = t.Subjects[(turn[p.tenant]/(subsPerConn*connsPerSubject))%len(t.Subjects)]
			turn[p.tenant]++
			filter = fmt.Sprintf(`{tenantID: %q}`, t.ID)
			if p.kind == "config" {
				filter = fmt.Sprintf(`{tenantID: %q, configID: %q}`, t.ID, t.ConfigID)
			}
		}
		if _, ok := bySubject[subj]; !ok {
			order = append(order, subj)
		}
		bySubject[subj] = append(bySubject[subj], subSpec{Idx: i, Filter: filter})
	}
	sp := spec{URL: "ws" + strings.TrimPrefix(base, "http") + "/graphql"}
	for _, subj := range order {
		role := auth.RoleCustomer
		if strings.HasPrefix(subj, "bench-provider-") {
			role = auth.RoleProvider
		}
		tok, err := iss.token(role, subj)
		if err != nil {
			return sp, 0, err
		}
		ss := bySubject[subj]
		for len(ss) > 0 {
			n := min(subsPerConn, len(ss))
			sp.Conns = append(sp.Conns, connSpec{Token: tok, Subs: ss[:n]})
			ss = ss[n:]
		}
	}
	return sp, len(sp.Conns), nil
}

func readReport(path string) (*report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r report
	if err := gob.NewDecoder(f).Decode(&r); err != nil {
		return nil, fmt.Errorf("subscribers' report: %w", err)
	}
	return &r, nil
}

// delays are the delivery delays of a set of (subscriber, call) pairs.
type delays struct {
	d             []time.Duration
	pairs, missed int
	early         int
}

func (d *delays) pct(p float64) time.Duration {
	if len(d.d) == 0 {
		return 0
	}
	i := int(float64(len(d.d))*p/100+0.5) - 1
	return d.d[max(0, min(i, len(d.d)-1))]
}

type analysis struct {
	delays
	byKind   map[string]*delays
	resynced int
	subErrs  int
	firstErr string
}

// analyze pairs each subscription with the calls it should see. A call counts as
// delivered at the first message that lists its request id in recent, or whose day
// count has grown by at least the call's rank among the subscription's calls (in answer
// order; recent holds only the latest 20, which a provider-wide filter outruns). The
// rank is an approximation when commits and answers interleave differently; the error
// is bounded by that interleaving, a few milliseconds.
func analyze(plan []planned, calls [][]call, rep *report) analysis {
	all := []call{}
	for t := range calls {
		sort.Slice(calls[t], func(i, j int) bool { return calls[t][i].answered < calls[t][j].answered })
		all = append(all, calls[t]...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].answered < all[j].answered })
	a := analysis{byKind: map[string]*delays{}}
	for _, s := range rep.Subs {
		p := plan[s.Idx]
		if s.Err != "" || !s.First {
			a.subErrs++
			if a.firstErr == "" {
				a.firstErr = s.Err
			}
			if !s.First {
				continue
			}
		}
		a.resynced += s.Resynced
		cs := all
		if p.tenant >= 0 {
			cs = calls[p.tenant]
		}
		kd := a.byKind[p.kind]
		if kd == nil {
			kd = &delays{}
			a.byKind[p.kind] = kd
		}
		ci := 0
		for k, c := range cs {
			var at int64
			if t, ok := s.Seen[idKey([]byte(c.id))]; ok {
				at = t
			}
			for ci < len(s.Counts) && s.Counts[ci][1]-s.Initial < int64(k+1) {
				ci++
			}
			if ci < len(s.Counts) && (at == 0 || s.Counts[ci][0] < at) {
				at = s.Counts[ci][0]
			}
			for _, x := range []*delays{&a.delays, kd} {
				x.pairs++
				switch {
				case at == 0:
					x.missed++
				case at < c.answered:
					x.early++
					x.d = append(x.d, 0)
				default:
					x.d = append(x.d, time.Duration(at-c.answered))
				}
			}
		}
	}
	for _, x := range append([]*delays{&a.delays}, mapValues(a.byKind)...) {
		sort.Slice(x.d, func(i, j int) bool { return x.d[i] < x.d[j] })
	}
	return a
}

func mapValues(m map[string]*delays) []*delays {
	var out []*delays
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func countKind(plan []planned, kind string) int {
	n := 0
	for _, p := range plan {
		if p.kind == kind {
			n++
		}
	}
	return n
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func fmtLimit(n uint64, err error) string {
	if err != nil {
		return "n/a (" + err.Error() + ")"
	}
	return fmt.Sprint(n)
}
