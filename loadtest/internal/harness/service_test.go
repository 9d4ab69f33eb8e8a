package harness

import (
	"strings"
	"testing"
)

// gcCount reads the collection count from the Go collector's summary, not from its
// quantiles or its sum, and says so when the metric is missing or malformed.
func TestGCCount(t *testing.T) {
	const exposition = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="1"} 0.000412
go_gc_duration_seconds_sum 0.004521
go_gc_duration_seconds_count 53
# HELP go_goroutines Number of goroutines that currently exist.
go_goroutines 10542
`
	n, err := gcCount(strings.NewReader(exposition))
	if err != nil || n != 53 {
		t.Fatalf("gcCount = %d, %v; want 53", n, err)
	}
	if _, err := gcCount(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Fatal("no error for an exposition without the metric")
	}
	if _, err := gcCount(strings.NewReader("go_gc_duration_seconds_count x\n")); err == nil {
		t.Fatal("no error for a malformed count")
	}
}
