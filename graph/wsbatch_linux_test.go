package graph

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A websocket's kernel send buffer is bounded, so that a client that stops reading costs
// the server at most that much before the write timeout closes it.
func TestWebsocketSendBufferIsBounded(t *testing.T) {
	server, _ := acceptOne(t, coderWebsocket{})
	tc, ok := server.corked.Conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("hijacked %T, want *net.TCPConn", server.corked.Conn)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	var serr error
	if err := raw.Control(func(fd uintptr) { size, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	// Linux reports twice what was set, capped by net.core.wmem_max; without the bound
	// it would report the autotuned default (tcp_wmem's middle value) instead.
	want := wsSendBuffer
	if b, err := os.ReadFile("/proc/sys/net/core/wmem_max"); err == nil {
		if limit, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && limit < want {
			want = limit
		}
	}
	if size != 2*want {
		t.Fatalf("SO_SNDBUF %d, want %d", size, 2*want)
	}
}
