package main

import (
	"fmt"
	"io"
	"slices"
)

// One run's invoke p99 ratio is a coarse judge on a shared 2-core machine: its two runs
// without subscribers, the same work twice, have come out ×1.0–3.1 apart on one day.
// -repeat runs the whole benchmark several times (a fresh service and database each
// time) and summarizes the ratios (min, median, max), so that the target is judged on
// their spread rather than on whichever run came last.

// target is the bound on the invoke p99 ratio: at most 20% above the runs
// without subscribers.
const target = 1.2

// outcome is what one benchmark run found about the invokes. A ratio of -1 was not
// measured (no control run, or a run without subscribers had no p99).
type outcome struct {
	ratio   float64 // invoke p99 with subscribers / mean of the two runs without
	spread  float64 // higher / lower p99 of the two runs without subscribers
	control float64 // invoke p99 with the spinner / mean of the two runs without
	// failed counts the invokes without a 2xx answer in all of the run's phases. Their
	// latencies are in the p99s (a fast 503 can lower one), so such a run's ratios are
	// left out of the summary.
	failed int
}

// repeat runs bench n times, stopping at the first error, and prints the summary of
// the runs that finished.
func repeat(o options, n int, w io.Writer) error {
	var outs []outcome
	var err error
	for i := range n {
		if n > 1 {
			fmt.Fprintf(w, "\n=== run %d of %d ===\n", i+1, n)
		}
		var out outcome
		if out, err = bench(o); err != nil {
			if n > 1 {
				err = fmt.Errorf("run %d of %d: %w", i+1, n, err)
			}
			break
		}
		outs = append(outs, out)
	}
	if len(outs) > 1 {
		fmt.Fprintln(w)
		summarize(w, outs)
	}
	return err
}

// summarize prints the spread of each ratio over the runs in which every invoke was
// answered.
func summarize(w io.Writer, outs []outcome) {
	pick := func(f func(outcome) float64) []float64 {
		var v []float64
		for _, o := range outs {
			if x := f(o); x >= 0 && o.failed == 0 {
				v = append(v, x)
			}
		}
		return v
	}
	ratios := pick(func(o outcome) float64 { return o.ratio })
	within := 0
	for _, r := range ratios {
		if r <= target {
			within++
		}
	}
	fmt.Fprintf(w, "over %d runs:\n", len(outs))
	left := 0
	for _, o := range outs {
		if o.failed > 0 {
			left++
		}
	}
	if left > 0 {
		fmt.Fprintf(w, "  runs left out because invokes failed in them (their p99s include the failures): %d\n", left)
	}
	fmt.Fprintf(w, "  invoke p99 with subscribers / without:          %s; at most %.2f in %d of %d\n", spreadOf(ratios), target, within, len(ratios))
	fmt.Fprintf(w, "  the two runs without subscribers, higher/lower: %s\n", spreadOf(pick(func(o outcome) float64 { return o.spread })))
	if c := pick(func(o outcome) float64 { return o.control }); len(c) > 0 {
		fmt.Fprintf(w, "  control (CPU burnt elsewhere) / without:        %s\n", spreadOf(c))
	}
}

// spreadOf formats the minimum, median and maximum of v.
func spreadOf(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	s := slices.Sorted(slices.Values(v))
	return fmt.Sprintf("min %.2f  median %.2f  max %.2f", s[0], median(s), s[len(s)-1])
}

// median of sorted, non-empty s: the mean of the middle two when their number is even.
func median(s []float64) float64 {
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}
