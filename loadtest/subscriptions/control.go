package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

// The control run answers how much of the invoke p99 ratio any load of the same size
// would cost on this machine: the subscriptions keep the service and their stand-in
// process busy, and calls then wait for a CPU. The control run repeats the invokes with
// no subscriptions while a spinner process burns what the loaded run added (the service's
// extra CPU and the stand-in's). A ratio close to the loaded run's says the machine's
// cores, not the delivery path, set it.

// spinSleep is the sleep between a spinner worker's spins: short, so that the load comes
// in slices of about a millisecond, as the service's deliveries do.
const spinSleep = 750 * time.Microsecond

// runSpinner burns about cores of CPU in short slices spread over the machine's CPUs,
// until SIGTERM or lifetime, when the process exits with its workers. Each worker spins
// for its share of every cycle, sized from the time its last sleep really took (sleeps
// overshoot), so the duty holds.
func runSpinner(cores float64, lifetime time.Duration) error {
	workers := runtime.NumCPU()
	duty := min(cores/float64(workers), 0.9)
	if duty <= 0 {
		return fmt.Errorf("spinner: -cores %v", cores)
	}
	for range workers {
		go func() {
			slept := spinSleep
			for {
				spin := time.Duration(float64(slept) * duty / (1 - duty))
				for t0 := time.Now(); time.Since(t0) < spin; {
				}
				t1 := time.Now()
				time.Sleep(spinSleep)
				slept = time.Since(t1)
			}
		}()
	}
	fmt.Println("spinning", strconv.FormatFloat(cores, 'f', 2, 64))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-sig:
	case <-time.After(lifetime):
	}
	return nil
}

// startSpinner starts the spinner role as a child process.
func startSpinner(cores float64, lifetime time.Duration) (*h.Child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-role", "spinner", "-lifetime", lifetime.String(), "-cores", strconv.FormatFloat(cores, 'f', 3, 64))
	c, _, err := h.StartChild("spinner", cmd, "spinning ")
	return c, err
}
