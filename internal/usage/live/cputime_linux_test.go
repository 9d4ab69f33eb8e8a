package live

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time of the calling thread (lock the goroutine to it first):
// on a shared machine it measures the work done, where wall time measures the queue.
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
