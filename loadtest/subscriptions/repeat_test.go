package main

import (
	"strings"
	"testing"
)

// The summary a -repeat run ends with: each ratio's min, median and max over the runs
// that measured it, and how many runs met the target.
func TestSummarize(t *testing.T) {
	var b strings.Builder
	summarize(&b, []outcome{
		{ratio: 1.1, spread: 1.5, control: -1},
		{ratio: 2.0, spread: 1.1, control: 1.3},
		{ratio: 0.9, spread: 3.0, control: 0.8},
		{ratio: 1.5, spread: 1.2, control: 1.0},
	})
	got := b.String()
	for _, want := range []string{
		"over 4 runs:",
		"invoke p99 with subscribers / without:          min 0.90  median 1.30  max 2.00; at most 1.20 in 2 of 4",
		"the two runs without subscribers, higher/lower: min 1.10  median 1.35  max 3.00",
		// The run without a control is left out, not counted as 0: three values, odd.
		"control (CPU burnt elsewhere) / without:        min 0.80  median 1.00  max 1.30",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}

	b.Reset()
	summarize(&b, []outcome{{ratio: 1.2, spread: -1, control: -1}, {ratio: 1.21, spread: -1, control: -1},
		// A run with failed invokes: a fast 503 lowers a p99, so its ratio would flatter.
		{ratio: 0.5, spread: 1.1, control: 0.5, failed: 3}})
	got = b.String()
	if !strings.Contains(got, "at most 1.20 in 1 of 2") || !strings.Contains(got, "min 1.20  median 1.21  max 1.21") ||
		!strings.Contains(got, "runs left out because invokes failed in them (their p99s include the failures): 1") || !strings.Contains(got, "higher/lower: n/a") || strings.Contains(got, "control (") {
		t.Errorf("runs without spreads or controls, and one with failures:\n%s", got)
	}
}
