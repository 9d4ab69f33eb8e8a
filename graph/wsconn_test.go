package graph

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
)

// acceptOne serves one websocket connection through ws and returns the server side and
// the client side of it.
func acceptOne(t *testing.T, ws coderWebsocket) (*coderConn, *websocket.Conn) {
	t.Helper()
	return acceptOneOn(t, ws, nil)
}

// acceptOneOn is acceptOne with the server's listener wrapped by wrap, when not nil.
func acceptOneOn(t *testing.T, ws coderWebsocket, wrap func(net.Listener) net.Listener) (*coderConn, *websocket.Conn) {
	t.Helper()
	accepted := make(chan *coderConn, 1)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, transport.WebsocketAcceptOptions{})
		if err != nil {
			t.Error(err)
			close(accepted)
			return
		}
		accepted <- c.(*coderConn)
		<-release
	}))
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReadLimit(-1)
	t.Cleanup(func() { _ = client.CloseNow() })
	server := <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = server.Close() })
	return server, client
}

// A subscriber that stops reading is cut off once its buffers are full and a write has
// made no progress for the write timeout: the write fails instead of blocking for ever.
func TestWSStalledReaderIsClosedAfterWriteTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	server, _ := acceptOne(t, coderWebsocket{WriteTimeout: timeout}) // the client never reads
	msg := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	lastOK := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = server.WriteText(msg); err != nil {
			break
		}
		lastOK = time.Now()
	}
	if err == nil {
		t.Fatal("writes to a peer that never reads still succeed after 30s")
	}
	stuck := time.Since(lastOK)
	if stuck < timeout-50*time.Millisecond || stuck > timeout+3*time.Second {
		t.Errorf("the stuck write failed after %v, want about the write timeout %v", stuck, timeout)
	}
	if err := server.WriteText([]byte(`{}`)); err == nil {
		t.Error("the connection still takes writes after a stuck write closed it")
	}
}

// A busy connection whose peer keeps reading is never cut off, even when its writes
// overlap so that one is always in flight for much longer than the write timeout.
func TestWSBusyReaderIsNotClosed(t *testing.T) {
	// Long enough that a loaded machine's scheduling pauses do not look like a stall;
	// the writes overlap for several times as long.
	const timeout = time.Second
	server, client := acceptOne(t, coderWebsocket{WriteTimeout: timeout})
	go func() {
		for {
			if _, _, err := client.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	msg := []byte(`"` + strings.Repeat("x", 16<<10) + `"`)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	stop := time.Now().Add(4 * timeout)
	for i := range errs {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if err := server.WriteText(msg); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
}
