package harness

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvOr is os.Getenv(k), or def when it is empty.
func EnvOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// FmtDur prints a duration with a unit suited to its size.
func FmtDur(d time.Duration) string {
	switch {
	case d >= time.Second || d <= -time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond || d <= -time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// FmtKB prints KiB as MiB, or why the figure is missing.
func FmtKB(kb int64, err error) string {
	if err != nil {
		return "n/a (" + err.Error() + ")"
	}
	return strconv.FormatFloat(float64(kb)/1024, 'f', 1, 64) + " MiB"
}

// Median of a copy of ds.
func Median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// LoadAvg is the 1-minute load average, printed so a reader can tell a slow run from a
// busy machine.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "n/a"
	}
	return f[0]
}
