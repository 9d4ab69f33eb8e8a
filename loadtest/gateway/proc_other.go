//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// Memory figures come from /proc, so off Linux they are reported as
// unavailable; the throughput and latency figures still work.
func childAttr() *syscall.SysProcAttr { return nil }

func procStatusKB(int, string) (int64, error) { return 0, errors.New("no /proc on this OS") }
