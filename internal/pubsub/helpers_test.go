package pubsub_test

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serviceURL returns the URL of a test service, skipping the test when it is not
// configured, except under CI where a missing service is a failure.
func serviceURL(t *testing.T, env string) string {
	t.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (required when CI=true)", env)
		}
		t.Skipf("%s is not set", env)
	}
	return u
}

var topicSeq atomic.Uint64

// uniqueTopic keeps tests (and repeated runs against the same server) from hearing
// each other.
func uniqueTopic(t *testing.T) string {
	return fmt.Sprintf("test.%s.%d.%d", strings.ToLower(t.Name()), time.Now().UnixNano(), topicSeq.Add(1))
}

// inbox records what a subscriber received.
type inbox struct {
	mu   sync.Mutex
	msgs []string
	got  chan struct{} // one token per message, large enough for any test
}

func newInbox() *inbox { return &inbox{got: make(chan struct{}, 10000)} }

func (b *inbox) fn(p []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, string(p))
	b.mu.Unlock()
	b.got <- struct{}{}
}

func (b *inbox) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.msgs...)
}

// waitN waits until n messages arrived in total and fails the test after timeout.
func (b *inbox) waitN(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if len(b.all()) >= n {
			return
		}
		select {
		case <-b.got:
		case <-deadline:
			t.Fatalf("received %d messages within %v, want %d: %q", len(b.all()), timeout, n, b.all())
		}
	}
}

// quiet asserts that nothing more than n messages arrives within d.
func (b *inbox) quiet(t *testing.T, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if got := b.all(); len(got) != n {
		t.Fatalf("received %d messages, want exactly %d: %q", len(got), n, got)
	}
}

// goroutinesSettle fails the test unless the goroutine count falls back to baseline:
// the bus's Close must have ended everything it started.
func goroutinesSettle(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy forwards TCP connections to a server and can make the current ones go silent
// without closing them, as a network partition does.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	pairs []*proxyPair
}

type proxyPair struct {
	client, server net.Conn
	frozen         atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pair := &proxyPair{client: c, server: s}
		p.mu.Lock()
		p.pairs = append(p.pairs, pair)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pair, c, s)
		go p.pipe(pair, s, c)
	}
}

// pipe copies src to dst; once the pair is frozen, what arrives is swallowed.
func (p *proxy) pipe(pair *proxyPair, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pair.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = src.Close()
	_ = dst.Close()
}

// freeze silences every connection open now; new connections work.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pair := range p.pairs {
		pair.frozen.Store(true)
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, pair := range p.pairs {
		_ = pair.client.Close()
		_ = pair.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
