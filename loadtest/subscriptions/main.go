// Command subscriptions is the usageStats subscription benchmark (issue 6, make
// bench-subscriptions). It starts the real agentregistry binary on a scratch PostgreSQL
// database (durable metering, LISTEN/NOTIFY bus) with 100 buyer tenants of the demo
// agent, holds -subscribers usageStats subscriptions open from a separate process (mixed
// filters: by tenant, by tenant and config, and a few provider-wide; one core, so that the
// stand-in for remote browsers does not take the machine from the service), runs invokes
// at a steady -rate spread over the tenants' keys, and prints:
//
//   - the delay from commit to delivery, p50/p99 over every (subscriber, call) pair that
//     should see the call: from the moment the call's 2xx answer arrived (in durable
//     mode its record is committed before the answer is written, so this is at or after
//     the commit) to the first message that reflects it (its request id is in recent,
//     or the day's request count has reached it);
//   - messages per second delivered;
//   - the service's RSS before and after opening the subscriptions, and per subscriber;
//   - the invoke p99 with the subscribers open beside two runs of the same rate without
//     them (before and after: the machine is shared, and the two show how far the floor
//     moved).
//
// It asserts nothing about timings.
//
//	go run ./loadtest/subscriptions [-subscribers 1000] [-tenants 100] [-rate 200] [-duration 20s] [-recent=false] [-replica] [-repeat N] [-db URL] [-bin PATH]
//
// Linux only for memory and CPU figures (/proc). Every phase has a fixed length and
// every helper process stops with the run (SIGTERM, Pdeathsig, and its own -lifetime).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

func main() {
	role := flag.String("role", "", "") // hidden: upstream | subscribers | spinner (children)
	lifetime := flag.Duration("lifetime", 30*time.Minute, "")
	specPath := flag.String("spec", "", "")
	outPath := flag.String("out", "", "")
	cores := flag.Float64("cores", 0, "") // hidden: the spinner's load
	var o options
	flag.IntVar(&o.subscribers, "subscribers", 1000, "usageStats subscriptions held open")
	flag.IntVar(&o.tenants, "tenants", 100, "buyer tenants the subscriptions and invokes are spread over")
	flag.IntVar(&o.rate, "rate", 200, "invokes per second (open loop, round-robin over the tenants' keys)")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of each measured run")
	flag.Float64Var(&o.providerShare, "provider-share", 0.01, "share of subscriptions that are provider-wide (every call)")
	flag.Float64Var(&o.configShare, "config-share", 0.1, "share of buyer subscriptions that also name the config")
	flag.StringVar(&o.dbURL, "db", h.EnvOr("BENCH_DATABASE_URL", os.Getenv("TEST_DATABASE_URL")), "PostgreSQL server URL; a scratch database is created and dropped")
	flag.StringVar(&o.bin, "bin", "", "use this agentregistry binary instead of building one (e.g. to keep it for perf symbols)")
	flag.BoolVar(&o.recent, "recent", true, "select recent { requestID } in each message (false: the day count only, to see what the list costs)")
	flag.BoolVar(&o.hold, "perf-pause", false, "print the service pid and wait 3s before the loaded run (to attach perf)")
	flag.BoolVar(&o.replica, "replica", false, "hold the subscriptions on a second replica of the service (same database, the PostgreSQL bus between them) while the invokes go to the first")
	flag.BoolVar(&o.control, "control", true, "add a run without subscribers while another process burns the CPU the loaded run added (see control.go)")
	flag.Var(&o.env, "service-env", "KEY=VALUE set in the service's environment (every replica's), repeatable (e.g. GOGC=400 or USAGE_ASYNC=true)")
	repeats := flag.Int("repeat", 1, "run the whole benchmark this many times (a fresh service and database each) and print the spread of the invoke p99 ratios (repeat.go)")
	flag.Parse()

	var err error
	switch *role {
	case "upstream":
		err = h.ServeRole(*role, "", *lifetime)
	case "subscribers":
		err = runSubscribers(*specPath, *outPath, *lifetime)
	case "spinner":
		err = runSpinner(*cores, *lifetime)
	case "":
		if *repeats < 1 {
			err = fmt.Errorf("-repeat %d: must be at least 1", *repeats)
			break
		}
		err = repeat(o, *repeats, os.Stdout)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest/subscriptions:", err)
		os.Exit(1)
	}
}
