package graph

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
)

// coalescingWriter sits between a websocket connection's frame writer and its socket,
// and lets the frames of messages written at the same moment leave in one write(2).
//
// A dashboard's subscriptions on one connection are often on the same filter, so the
// hub hands them their messages together and their goroutines write at once; one
// syscall per message was a third of the service's CPU at 10,000 subscribers (make
// bench-subscriptions), and each also woke the reader. Writers bracket a message with
// hold and release: while any writer holds, frames are buffered, and the last writer
// to release sends everything in one write. Nothing is delayed to wait for company:
// a lone writer's frame leaves when it releases, and frames written with no writer
// holding (coder/websocket's own pongs and close frames) go out at once, after what
// is buffered, so frames keep their order.
type coalescingWriter struct {
	conn io.Writer

	mu      sync.Mutex
	holders int
	buf     *[]byte // pending frames; nil when none

	// sendMu keeps whole buffers in order on the socket: two flushes must not
	// interleave their writes.
	sendMu sync.Mutex
}

// maxCoalesced bounds the bytes buffered for one connection: past it the writer that
// adds more sends them itself, so a peer that stopped reading makes writers wait (and
// the write timeout close it) rather than grow memory.
const maxCoalesced = 256 << 10

// coalesceBufs recycles flush buffers across connections, so memory follows the
// flushes in progress, not the connections held.
var coalesceBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newCoalescingWriter(conn io.Writer) *coalescingWriter { return &coalescingWriter{conn: conn} }

// hold marks a message write in progress: frames written until the matching release
// may wait in the buffer.
func (w *coalescingWriter) hold() {
	w.mu.Lock()
	w.holders++
	w.mu.Unlock()
}

// release ends a hold. The last holder sends what is buffered and returns the
// socket's error, if any; the others return at once.
//
// The last holder first yields once: the subscriptions a flush of the hub woke
// together are runnable beside it, and on a busy process they would otherwise reach
// their writes one after the other, each finding the connection idle. If one of them
// holds when it resumes, that one sends for both.
func (w *coalescingWriter) release() error {
	w.mu.Lock()
	w.holders--
	last, full := w.holders == 0, w.pendingLocked() >= maxCoalesced
	w.mu.Unlock()
	switch {
	case full:
		return w.flush()
	case !last:
		return nil
	}
	runtime.Gosched()
	w.mu.Lock()
	taken := w.holders > 0
	w.mu.Unlock()
	if taken {
		return nil
	}
	return w.flush()
}

// Write implements io.Writer for the frame writer: it buffers p while a write holds
// (and the buffer is not full), and otherwise sends the buffer and p.
func (w *coalescingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.buf == nil {
		w.buf = coalesceBufs.Get().(*[]byte)
	}
	*w.buf = append(*w.buf, p...)
	held := w.holders > 0 && len(*w.buf) < maxCoalesced
	w.mu.Unlock()
	if held {
		return len(p), nil
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *coalescingWriter) pendingLocked() int {
	if w.buf == nil {
		return 0
	}
	return len(*w.buf)
}

// flush sends what is buffered, in one write.
func (w *coalescingWriter) flush() error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.mu.Lock()
	buf := w.buf
	w.buf = nil
	w.mu.Unlock()
	if buf == nil {
		return nil
	}
	_, err := w.conn.Write(*buf)
	if err != nil {
		// Writers that returned earlier had their frames accepted; they are lost with
		// the socket. Closing it makes the reader fail, so the connection ends now
		// instead of at its next write.
		if c, ok := w.conn.(io.Closer); ok {
			_ = c.Close()
		}
	}
	if cap(*buf) <= 4*maxCoalesced {
		*buf = (*buf)[:0]
		coalesceBufs.Put(buf)
	}
	return err
}

// coalescingHijack hands websocket.Accept the connection with a frame writer that
// goes through a coalescingWriter. Reads and Close use the connection as they would.
type coalescingHijack struct {
	http.ResponseWriter
	out *coalescingWriter
}

func (h *coalescingHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http has flushed the 101 response by now; the writer it returns is empty.
	h.out = newCoalescingWriter(conn)
	return conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(h.out, 4096)), nil
}

// canHijack reports whether w, or a writer it wraps, can hand over its connection.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// Unwrap lets http.ResponseController find the underlying writer.
func (h *coalescingHijack) Unwrap() http.ResponseWriter { return h.ResponseWriter }
