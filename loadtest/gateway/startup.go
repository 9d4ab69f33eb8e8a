package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

// benchStartup times `agentregistry serve --dev` from exec to the first 200
// of /readyz, each run on a fresh DATA_DIR (so the SQLite migration and the
// demo seed are part of it, as on a first `make run`), and reads the idle
// RSS 2s after readiness.
func benchStartup(runs int) error {
	if runs <= 0 {
		return fmt.Errorf("-startup-runs must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "bench-startup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "building agentregistry…")
	bin, err := h.BuildService(ctx, tmp, prebuilt)
	if err != nil {
		return err
	}
	var ready []time.Duration
	var rss []int64
	for i := range runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		addr, err := h.FreePort()
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "serve", "--dev")
		cmd.Env = h.ServiceEnv(map[string]string{
			"DATA_DIR":     filepath.Join(tmp, fmt.Sprintf("data%d", i)),
			"DATABASE_URL": "sqlite:" + filepath.Join(tmp, fmt.Sprintf("data%d", i), "agentregistry.db"),
			"ADDR":         addr,
			"LOG_LEVEL":    "warn",
		})
		cmd.SysProcAttr = h.ChildAttr()
		cmd.Stdout = nil // the dev banner (tokens, keys) is not wanted here
		cmd.Stderr = &h.PrefixWriter{Name: "serve --dev", W: os.Stderr}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// stop is harness.Child.Stop for a child started without a ready line: SIGTERM,
		// then a kill after 30s.
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		_, err = h.WaitReady(ctx, "http://"+addr+"/readyz", 60*time.Second)
		took := time.Since(start) // from just before exec, not from the first poll
		if err != nil {
			stop()
			return err
		}
		time.Sleep(2 * time.Second)
		kb, rerr := h.ProcStatusKB(cmd.Process.Pid, "VmRSS")
		stop()
		fmt.Printf("run %d: ready in %s, idle RSS %s\n", i+1, h.FmtDur(took), h.FmtKB(kb, rerr))
		ready = append(ready, took)
		if rerr == nil {
			rss = append(rss, kb)
		}
	}
	rssD := make([]time.Duration, len(rss)) // reuse median for KiB counts
	for i, v := range rss {
		rssD[i] = time.Duration(v)
	}
	fmt.Printf("median of %d: ready in %s, idle RSS %s\n", runs, h.FmtDur(h.Median(ready)), h.FmtKB(int64(h.Median(rssD)), nil))
	return nil
}
