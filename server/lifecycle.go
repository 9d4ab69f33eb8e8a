package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// SignalContext is cancelled on SIGTERM (what orchestrators send before a
// kill) or SIGINT (Ctrl-C). Call stop once shutdown has begun so a second
// signal gets the default behaviour and kills a stuck process.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
}

// Serve serves srv on ln until ctx is cancelled, then shuts down gracefully:
// the listener closes, in-flight requests finish, and the drains run in
// order (e.g. flush the usage recorder after the last request recorded
// usage), all within one shutdownTimeout deadline. It returns nil on a clean
// shutdown, and otherwise every error that occurred.
//
// srv.Shutdown does not wait for hijacked connections (websocket
// subscriptions); register their closers with srv.RegisterOnShutdown.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration, logger *slog.Logger, drains ...func(context.Context) error) error {
	// Count requests in flight, so that after a forced Close the drains wait for the
	// handlers that were cut off (they may still be recording usage). Websocket upgrades
	// are not counted: their handlers live as long as the connection.
	var inflight sync.WaitGroup
	if h := srv.Handler; h != nil {
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") == "" {
				inflight.Add(1)
				defer inflight.Done()
			}
			h.ServeHTTP(w, r)
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", slog.String("addr", ln.Addr().String()))

	var errs []error
	select {
	case err := <-serveErr:
		// The server stopped on its own (listener failure, or someone else
		// called Shutdown/Close). Still drain: buffered usage must not be lost.
		if !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
		serveErr = nil
	case <-ctx.Done():
		logger.Info("shutting down", slog.Duration("timeout", shutdownTimeout))
	}

	// WithoutCancel: ctx is already cancelled, but shutdown needs a live
	// context bounded only by its own deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()

	if serveErr != nil {
		// Requests get three quarters of the budget; the rest is kept for the drains, so
		// a request that outlives the deadline cannot starve the usage flush.
		hctx, hcancel := context.WithTimeout(sctx, shutdownTimeout*3/4)
		defer hcancel()
		if err := srv.Shutdown(hctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
			// Deadline passed with requests still running: cut them off
			// rather than hang past the orchestrator's grace period.
			_ = srv.Close()
		}
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	// Handlers cut off by Close return once their contexts are cancelled; wait for them
	// (within the deadline) before the drains close what they use.
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
	}

	for i, drain := range drains {
		if err := drain(sctx); err != nil {
			errs = append(errs, fmt.Errorf("drain %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		logger.Error("shutdown incomplete", slog.String("error", err.Error()))
		return err
	}
	logger.Info("shutdown complete")
	return nil
}
