package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
)

// serveRole runs a child role (upstream or proxy) on a fresh loopback port,
// prints "listening <url>" for the parent, and stops on SIGTERM/SIGINT, when
// the parent dies (Pdeathsig), or after lifetime at the latest, so no run
// leaves a server behind.
func serveRole(role, upstream string, lifetime time.Duration) error {
	var h http.Handler
	switch role {
	case "upstream":
		// No delays, no usage reporting: the fake should cost as little as
		// possible so both targets are measured, not the fake.
		h = echoruntime.New(echoruntime.Options{})
	case "proxy":
		u, err := url.Parse(upstream)
		if err != nil || upstream == "" {
			return fmt.Errorf("proxy: -upstream URL required: %v", err)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		// Same pool bounds as the gateway's Langflow client (256 per host),
		// so the baseline is not handicapped by re-dialing.
		rp.Transport = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxConnsPerHost:     256,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}
		h = rp
	default:
		return fmt.Errorf("unknown -role %q", role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// child is a process the benchmark started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// startChild starts cmd and waits (at most 60s) for a stdout line starting
// with prefix; it returns the rest of that line. The remaining stdout is
// drained so the child never blocks on a full pipe.
func startChild(name string, cmd *exec.Cmd, prefix string) (*child, string, error) {
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = &prefixWriter{name: name, w: os.Stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if line := sc.Text(); !sent && strings.HasPrefix(line, prefix) {
				found <- strings.TrimSpace(strings.TrimPrefix(line, prefix))
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
		c.done <- cmd.Wait()
		close(c.done)
	}()
	select {
	case v := <-found:
		return c, v, nil
	case err := <-c.done:
		return nil, "", fmt.Errorf("%s exited before it was ready: %v", name, err)
	case <-time.After(60 * time.Second):
		c.stop()
		return nil, "", fmt.Errorf("%s: no %q line within 60s", name, prefix)
	}
}

// stop asks the child to finish (SIGTERM: the service drains its recorder)
// and kills it if it has not within 30s.
func (c *child) stop() {
	if c == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		fmt.Fprintf(os.Stderr, "%s: still running 30s after SIGTERM, killing pid %d\n", c.name, c.cmd.Process.Pid)
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// prefixWriter tags a child's stderr lines so warnings can be told apart.
type prefixWriter struct {
	name string
	w    io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "[%s] %s", p.name, line)
		}
	}
	return len(b), nil
}
