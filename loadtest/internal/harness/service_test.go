package harness

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// exposition is a trimmed copy of what the service's /metrics serves.
const exposition = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="1"} 0.000412
go_gc_duration_seconds_sum 0.004521
go_gc_duration_seconds_count 53
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated in heap until now, even if released already.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 1.2345678e+08
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 10542
# HELP go_sched_latencies_seconds Distribution of the time goroutines have spent in the scheduler in a runnable state before actually running.
# TYPE go_sched_latencies_seconds histogram
go_sched_latencies_seconds_bucket{le="6.399999999999999e-08"} 9
go_sched_latencies_seconds_bucket{le="6.399999999999999e-07"} 31
go_sched_latencies_seconds_bucket{le="7.167999999999999e-06"} 33
go_sched_latencies_seconds_bucket{le="8.191999999999999e-05"} 60
go_sched_latencies_seconds_bucket{le="0.0009175039999999999"} 75
go_sched_latencies_seconds_bucket{le="0.010485759999999998"} 80
go_sched_latencies_seconds_bucket{le="0.11744051199999998"} 82
go_sched_latencies_seconds_bucket{le="+Inf"} 83
go_sched_latencies_seconds_sum 0.301425024
go_sched_latencies_seconds_count 83
`

// parseRuntime reads the collection count from the Go collector's summary (not from its
// quantiles or its sum) and the scheduling waits from their histogram, and says so when
// the count is missing or malformed.
func TestParseRuntime(t *testing.T) {
	rt, err := parseRuntime(strings.NewReader(exposition))
	if err != nil || rt.GCCycles != 53 {
		t.Fatalf("parseRuntime = %d cycles, %v; want 53", rt.GCCycles, err)
	}
	if rt.AllocBytes != 1.2345678e+08 {
		t.Errorf("AllocBytes = %g, want 1.2345678e+08", rt.AllocBytes)
	}
	if len(rt.SchedWaits) != 8 || rt.SchedWaitCount != 83 {
		t.Fatalf("scheduling histogram: %d buckets, count %d; want 8 and 83", len(rt.SchedWaits), rt.SchedWaitCount)
	}
	if b := rt.SchedWaits[4]; b.UpperBound != 917504*time.Nanosecond || b.Count != 75 {
		t.Errorf("bucket 4 = %+v, want 75 up to 917.504µs", b)
	}
	if b := rt.SchedWaits[7]; b.UpperBound != time.Duration(math.MaxInt64) || b.Count != 83 {
		t.Errorf("last bucket = %+v, want +Inf holding all 83", b)
	}
	if _, err := parseRuntime(strings.NewReader("# TYPE go_goroutines gauge\ngo_goroutines 3\n")); err == nil {
		t.Fatal("no error for an exposition without the collection count")
	}
	if _, err := parseRuntime(strings.NewReader("go_gc_duration_seconds_count x\n")); err == nil {
		t.Fatal("no error for a malformed count")
	}
	old, err := parseRuntime(strings.NewReader(strings.Replace(exposition[:strings.Index(exposition, "# HELP go_sched")], "go_memstats_alloc_bytes_total 1", "other_total 1", 1)))
	if err != nil || len(old.SchedWaits) != 0 || old.AllocBytes != -1 {
		t.Fatalf("exposition without the histogram and the allocation count: %d buckets, %g bytes, %v; want none, -1 and no error",
			len(old.SchedWaits), old.AllocBytes, err)
	}
}

// WaitsOver counts, between two snapshots, the waits in buckets above the last bound
// not above the asked duration, and refuses snapshots it cannot compare.
func TestWaitsOver(t *testing.T) {
	later, err := parseRuntime(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	// The earlier snapshot: one wait in each finite bucket, none past the last, so its
	// cumulative counts (1 to 7) differ from bucket to bucket.
	earlier := Runtime{SchedWaitCount: 7, SchedWaits: make([]Bucket, len(later.SchedWaits))}
	for i, b := range later.SchedWaits {
		earlier.SchedWaits[i] = Bucket{UpperBound: b.UpperBound, Count: uint64(min(i+1, 7))}
	}
	for _, c := range []struct {
		d     time.Duration
		n     uint64
		bound time.Duration
	}{
		{time.Millisecond, 6, 917504 * time.Nanosecond},        // (83-7) in all, (75-5) within
		{20 * time.Millisecond, 2, 10485760 * time.Nanosecond}, // (83-7) in all, (80-6) within
		{time.Second, 1, 117440512 * time.Nanosecond},          // (83-7) in all, (82-7) within
	} {
		n, bound, ok := later.WaitsOver(earlier, c.d)
		if !ok || n != c.n || bound != c.bound {
			t.Errorf("WaitsOver(%s) = %d over %s, %v; want %d over %s", c.d, n, bound, ok, c.n, c.bound)
		}
	}
	if _, _, ok := later.WaitsOver(Runtime{}, time.Millisecond); ok {
		t.Error("compared with a snapshot without the histogram")
	}
	if _, _, ok := later.WaitsOver(earlier, time.Nanosecond); ok {
		t.Error("answered for a duration below every bound")
	}
	// A restarted service: its counts start again below the earlier ones.
	if _, _, ok := earlier.WaitsOver(later, time.Millisecond); ok {
		t.Error("compared across a restart (counts went down)")
	}
	// Four waits past 10 ms before, three after: not one service's counts.
	inconsistent := Runtime{SchedWaitCount: 10, SchedWaits: slices.Clone(earlier.SchedWaits)}
	inconsistent.SchedWaits[len(inconsistent.SchedWaits)-1].Count = 10
	if _, _, ok := later.WaitsOver(inconsistent, time.Millisecond); ok {
		t.Error("compared snapshots where a bucket's own count went down")
	}
	shifted := Runtime{SchedWaitCount: later.SchedWaitCount, SchedWaits: slices.Clone(later.SchedWaits)}
	shifted.SchedWaits[2].UpperBound++
	if _, _, ok := later.WaitsOver(shifted, time.Millisecond); ok {
		t.Error("compared histograms with different bounds")
	}
}

// EnvFlag takes KEY=VALUE (the value may hold '=' or be empty) and refuses anything else.
func TestEnvFlag(t *testing.T) {
	var e EnvFlag
	for _, kv := range []string{"GOGC=400", "GODEBUG=gctrace=1", "EMPTY="} {
		if err := e.Set(kv); err != nil {
			t.Fatalf("Set(%q): %v", kv, err)
		}
	}
	if e["GOGC"] != "400" || e["GODEBUG"] != "gctrace=1" || e["EMPTY"] != "" || len(e) != 3 {
		t.Fatalf("got %v", map[string]string(e))
	}
	for _, bad := range []string{"GOGC", "=400", ""} {
		if err := e.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
