package harness

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

// Child is a process a tool started and must stop.
type Child struct {
	Name string
	Cmd  *exec.Cmd
	done chan error
}

// Pid is the child's process id (for /proc readings and perf).
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// StartChild starts cmd and waits (at most 60s) for a stdout line starting with prefix;
// it returns the rest of that line. The remaining stdout is drained so the child never
// blocks on a full pipe.
func StartChild(name string, cmd *exec.Cmd, prefix string) (*Child, string, error) {
	return StartChildWithin(name, cmd, prefix, 60*time.Second)
}

// StartChildWithin is StartChild with a longer (or shorter) wait for the ready line, for
// children whose preparation is part of what they do (opening thousands of sockets).
func StartChildWithin(name string, cmd *exec.Cmd, prefix string, wait time.Duration) (*Child, string, error) {
	cmd.SysProcAttr = ChildAttr()
	cmd.Stderr = &PrefixWriter{Name: name, W: os.Stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, Cmd: cmd, done: make(chan error, 1)}
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
	case <-time.After(wait):
		c.Stop()
		return nil, "", fmt.Errorf("%s: no %q line within %s", name, prefix, wait)
	}
}

// Wait waits at most limit for the child to exit by itself, then stops it.
func (c *Child) Wait(limit time.Duration) error {
	if c == nil {
		return nil
	}
	select {
	case err := <-c.done:
		return err
	case <-time.After(limit):
		c.Stop()
		return fmt.Errorf("%s did not exit within %s", c.Name, limit)
	}
}

// Stop asks the child to finish (SIGTERM: the service drains its recorder) and kills
// it if it has not within 30s.
func (c *Child) Stop() {
	if c == nil || c.Cmd.Process == nil {
		return
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		fmt.Fprintf(os.Stderr, "%s: still running 30s after SIGTERM, killing pid %d\n", c.Name, c.Cmd.Process.Pid)
		_ = c.Cmd.Process.Kill()
		<-c.done
	}
}

// PrefixWriter tags a child's stderr lines so warnings can be told apart.
type PrefixWriter struct {
	Name string
	W    io.Writer
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.W, "[%s] %s", p.Name, line)
		}
	}
	return len(b), nil
}

// StartRole re-executes the running tool as a child role: the tool must pass
// `-role ROLE -lifetime D` (and extra) to ServeRole or its own role. lifetime caps the
// child's life in case neither SIGTERM nor Pdeathsig reaches it.
func StartRole(role string, lifetime time.Duration, extra ...string) (*Child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"-role", role, "-lifetime", lifetime.String()}, extra...)
	return StartChild(role, exec.Command(self, args...), "listening ")
}

// ServeRole runs an HTTP helper role on a fresh loopback port — "upstream" (a
// Langflow-compatible echo that answers at once) or "proxy" (a bare
// httputil.ReverseProxy to upstream) — prints "listening <url>" for the parent, and stops
// on SIGTERM/SIGINT, when the parent dies (Pdeathsig), or after lifetime at the latest,
// so no run leaves a server behind.
func ServeRole(role, upstream string, lifetime time.Duration) error {
	var h http.Handler
	switch role {
	case "upstream":
		// No delays, no usage reporting: the fake should cost as little as possible so
		// the service is measured, not the fake.
		h = echoruntime.New(echoruntime.Options{})
	case "proxy":
		u, err := url.Parse(upstream)
		if err != nil || upstream == "" {
			return fmt.Errorf("proxy: -upstream URL required: %v", err)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		// Same pool bounds as the gateway's Langflow client (256 per host), so the
		// baseline is not handicapped by re-dialing.
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
