package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestServeDrainsOnSIGTERM(t *testing.T) {
	var logs syncBuffer
	logger := NewLogger(&logs, "info", "json")

	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := SignalContext(t.Context())
	defer stop()

	var drained atomic.Bool
	var requestDoneBeforeDrain atomic.Bool
	var respDone atomic.Bool
	drain := func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("drain got no deadline")
		}
		requestDoneBeforeDrain.Store(respDone.Load())
		drained.Store(true)
		return nil
	}
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, srv, ln, 5*time.Second, logger, drain) }()

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b), err}
	}()

	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the handler")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	select {
	case r := <-got:
		if r.err != nil || r.status != 200 || r.body != "done" {
			t.Fatalf("in-flight request: %+v", r)
		}
		respDone.Store(true)
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if !drained.Load() {
		t.Fatal("drain did not run")
	}
	if ctx.Err() == nil {
		t.Fatal("SIGTERM did not cancel the signal context")
	}
	// The listener is closed: new connections are refused.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestServeReportsDrainErrorsAndRunsAllDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var order []int
	errFlush := errors.New("flush failed")
	err = Serve(ctx, &http.Server{Handler: http.NotFoundHandler()}, ln, time.Second, NewLogger(io.Discard, "info", "json"),
		func(context.Context) error { order = append(order, 1); return errFlush },
		func(context.Context) error { order = append(order, 2); return nil },
	)
	if !errors.Is(err, errFlush) {
		t.Fatalf("Serve = %v, want the drain error", err)
	}
	if len(order) != 2 || order[0] != 1 || order[1] != 2 {
		t.Fatalf("drains ran in order %v", order)
	}
}

func TestServeShutdownDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, srv, ln, 100*time.Millisecond, NewLogger(io.Discard, "info", "json"))
	}()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Serve = %v, want deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve hung past its shutdown deadline")
	}
}
