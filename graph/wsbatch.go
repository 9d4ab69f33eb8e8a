package graph

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A connection's protocol messages are written in batches: the messages that its
// subscriptions write at the same moment go out in one system call instead of one each.
// At 10,000 subscribers the usageStats fan-out wakes a connection's subscriptions
// together (the hub hands out a connection's messages back to back: live.WithCohort),
// and writing each message on its own was 40% of the process's CPU and as many wake-ups
// of the client (make bench-subscriptions).
//
// coder/websocket frames and flushes every message to the connection it was given. The
// connection it is given is a corkedConn: while corked it keeps what is written, and
// writes it all at uncork. The first writer to find the connection uncorked corks it,
// writes its message, yields once so that the goroutines woken with it write theirs into
// the cork, and uncorks (coderConn.writeText).

// maxCorkedBytes bounds what a corked connection keeps. A write that would pass it
// writes everything through at once, in the writer's goroutine: a peer that stops
// reading then holds back its writers (and the write timeout closes it) instead of
// growing the buffer.
const maxCorkedBytes = 64 << 10

// corkBuffers are the corked connections' buffers, taken at the first write after cork
// and returned at uncork, so that an idle connection holds none.
var corkBuffers = sync.Pool{New: func() any { return new([]byte) }}

// corkedConn is the hijacked connection under a websocket.
type corkedConn struct {
	net.Conn

	// wmu serializes writing to the socket and to buf: every Write, uncork, and the
	// flush at close. Taken before mu.
	wmu     sync.Mutex
	buf     *[]byte     // what was written while corked; nil when empty
	sending atomic.Bool // a write to the socket is in flight (under wmu)

	mu     sync.Mutex // guards corked, which cork sets without waiting for a write
	corked bool
}

// cork makes the writes that follow wait in memory until uncork. It reports false when
// the connection is corked already: whoever corked it uncorks it.
func (c *corkedConn) cork() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		return false
	}
	c.corked = true
	return true
}

// Write implements net.Conn. While corked it keeps p for uncork, up to maxCorkedBytes.
func (c *corkedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	corked := c.corked
	c.mu.Unlock()
	pending := 0
	if c.buf != nil {
		pending = len(*c.buf)
	}
	if corked && pending+len(p) <= maxCorkedBytes {
		if c.buf == nil {
			c.buf = corkBuffers.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if pending > 0 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return c.send(p)
}

// send writes p to the socket; c.wmu must be held.
func (c *corkedConn) send(p []byte) (int, error) {
	c.sending.Store(true)
	defer c.sending.Store(false)
	return c.Conn.Write(p)
}

// uncork writes what was kept while corked, in one system call.
func (c *corkedConn) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.corked = false
	c.mu.Unlock()
	return c.flushLocked()
}

// flushLocked writes buf and gives it back to the pool; c.wmu must be held.
func (c *corkedConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	_, err := c.send(*b)
	if cap(*b) <= maxCorkedBytes {
		*b = (*b)[:0]
		corkBuffers.Put(b)
	}
	return err
}

// Close implements net.Conn. What is still corked (a close frame, or messages whose
// writers were told they were sent) is written first, within a second, unless a write to
// the socket is in flight: a connection closed because its write is stuck must not wait
// for it. Holders of wmu that are only copying into the cork are waited for.
func (c *corkedConn) Close() error {
	for {
		if c.wmu.TryLock() {
			if c.buf != nil {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				_ = c.flushLocked()
			}
			c.wmu.Unlock()
			break
		}
		if c.sending.Load() {
			break
		}
		runtime.Gosched()
	}
	return c.Conn.Close()
}

// wsSendBuffer bounds the kernel's send buffer of each websocket (Linux doubles it for its
// own bookkeeping). A dashboard gets a few KiB per interval, far below it. A client that
// stops reading fills it within a few intervals, and the write timeout (coderConn) then
// closes it; with the kernel's autotuning, up to tcp_wmem's maximum (4 MiB by default)
// would queue first, per connection, and stay queued after the close until TCP gave up.
const wsSendBuffer = 128 << 10

// corkingWriter hands coder/websocket a corkedConn when it hijacks the connection.
type corkingWriter struct {
	http.ResponseWriter
	conn *corkedConn // set by Hijack
}

// Hijack implements http.Hijacker. The buffered writer coder/websocket frames into is a
// new one on the corked connection (net/http has flushed the handshake's response by now).
func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if b, ok := conn.(interface{ SetWriteBuffer(int) error }); ok {
		_ = b.SetWriteBuffer(wsSendBuffer) // best effort: the write timeout still applies
	}
	w.conn = &corkedConn{Conn: conn}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, 4096)), nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *corkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeText writes one text message. The writer that corks the connection yields once,
// so that the subscriptions woken with it write theirs into the cork too, then uncorks:
// everything goes out in one system call. The others return as soon as their message is
// in the cork; a failure to send it shows at their next write (the connection is closed
// by then).
func (c *coderConn) writeText(data []byte) error {
	if c.corked == nil || !c.corked.cork() {
		return c.watched(func() error { return c.writeMessage(data) })
	}
	err := c.watched(func() error { return c.writeMessage(data) })
	runtime.Gosched()
	if uerr := c.watched(c.corked.uncork); err == nil {
		err = uerr
	}
	return err
}
