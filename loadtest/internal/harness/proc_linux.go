package harness

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ChildAttr makes the kernel send SIGTERM to a child when the tool dies, so an
// interrupted run does not leave servers listening.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// ProcStatusKB reads one "Vm…" field of /proc/<pid>/status in KiB
// (VmRSS: resident now; VmHWM: the peak resident set so far).
func ProcStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && name == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// WriteSyscalls is how many write system calls the process has made so far: syscw in
// /proc/<pid>/io, which counts write and writev (the file write path, which Go's
// socket writes take) but not sendmsg or sendto.
func WriteSyscalls(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no syscw in /proc/%d/io", pid)
}

// RaiseFileLimit lifts the soft open-file limit to the hard one and returns it. Call it
// before starting children: they inherit it, so the service can hold as many sockets as
// the generator opens.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// CPUTime is the user+system CPU a process has used so far (from /proc/<pid>/stat, in
// clock ticks of 10ms), so a run can report CPU spent rather than wall time alone.
func CPUTime(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields we want follow its closing paren.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return (ut + st) / 100, nil // USER_HZ is 100 on every Linux Go supports
}

// MachineCPU returns the busy and total CPU time of the whole machine so far (from the
// first line of /proc/stat, in clock ticks): the difference over a run says how much of
// the machine was used, by the tool's processes and by everyone else's.
func MachineCPU() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat")
	}
	for i, v := range f[1:] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("unexpected /proc/stat")
		}
		total += x
		if i != 3 && i != 4 { // idle and iowait
			busy += x
		}
	}
	return busy, total, nil
}

// IOStall returns how long, in all, every non-idle task of the machine has been stalled
// on I/O at the same time so far (the "full" line of /proc/pressure/io; host-wide, even
// in a container). Its difference over a run tells a disk stall (PostgreSQL's commits
// wait for fsync) from the service's own slowness.
func IOStall() (time.Duration, error) { return readPressure("io", "full") }

// CPUWait returns how long, in all, at least one runnable task of the machine has waited
// for a CPU so far (the "some" line of /proc/pressure/cpu). It is the kernel's
// counterpart of the Go scheduler's waits: its difference over a run, as a share of the
// run, tells how often a wake-up anywhere on the machine (an invoke's, PostgreSQL's, a
// subscription's) found every CPU taken.
func CPUWait() (time.Duration, error) { return readPressure("cpu", "some") }

func readPressure(resource, kind string) (time.Duration, error) {
	path := "/proc/pressure/" + resource
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	d, err := parsePressure(string(b), kind)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// parsePressure reads the total of the kind ("some" or "full") line of a PSI file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=12345
func parsePressure(text, kind string) (time.Duration, error) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != kind {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, "total="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s total %q: %w", kind, v, err)
				}
				return time.Duration(us) * time.Microsecond, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s total", kind)
}
