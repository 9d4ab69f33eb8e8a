//go:build !linux

package harness

import (
	"errors"
	"syscall"
	"time"
)

// Memory and CPU figures come from /proc, so off Linux they are reported as
// unavailable; the throughput and latency figures still work.
func ChildAttr() *syscall.SysProcAttr { return nil }

var errNoProc = errors.New("no /proc on this OS")

func ProcStatusKB(int, string) (int64, error) { return 0, errNoProc }

func RaiseFileLimit() (uint64, error) { return 0, errNoProc }

func CPUTime(int) (float64, error) { return 0, errNoProc }

func WriteSyscalls(int) (int64, error) { return 0, errNoProc }

func MachineCPU() (busy, total float64, err error) { return 0, 0, errNoProc }

func IOStall() (time.Duration, error) { return 0, errNoProc }

func CPUWait() (time.Duration, error) { return 0, errNoProc }
