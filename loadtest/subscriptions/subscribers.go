package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

// The service's websocket caps (graph/handler.go defaults; no environment variable
// changes them), which the plan of connections stays under.
const (
	subsPerConn     = 20
	connsPerSubject = 10
)

// spec is what the subscribers role holds open, written by the parent.
type spec struct {
	URL   string     `json:"url"`
	Query string     `json:"query"` // with one %s for the filter
	Conns []connSpec `json:"conns"`
}

type connSpec struct {
	Token string    `json:"token"`
	Subs  []subSpec `json:"subs"`
}

type subSpec struct {
	Idx    int    `json:"idx"`    // index into the parent's plan
	Filter string `json:"filter"` // GraphQL input literal
}

// The selections: what a message must carry to tell which calls it reflects. The day
// count alone is enough (see analyze); recent is what a dashboard shows, and it is a
// list, which costs the service more per message (-recent=false measures without it).
const (
	queryRecent = `subscription { usageStats(filter: %s) { day { requests } recent { requestID } resynced } }`
	queryCounts = `subscription { usageStats(filter: %s) { day { requests } resynced } }`
)

// subResult is what one subscription saw. Times are Unix nanoseconds taken the moment
// the frame was read, before decoding.
type subResult struct {
	Idx      int
	Err      string
	First    bool
	Initial  int64            // day.requests of the first message
	Counts   [][2]int64       // (time, day.requests) each time the count grew
	Seen     map[uint64]int64 // idKey(request id) -> first message listing it in recent
	Msgs     int              // messages after the first
	Resynced int              // of which marked resynced (the reader was too slow)
}

// report is the role's output file.
type report struct {
	Subs       []*subResult
	Hist       map[int64]int // Unix second -> messages read
	ConnErrors []string
	OpenTook   time.Duration
}

// runSubscribers is the -role subscribers child: it opens every connection and
// subscription of the spec, prints "subscribed <ok> <failed>" once every subscription
// has its first message (or failed), records what arrives until its stdin closes (the
// parent's "stop"), then writes the report and exits. lifetime bounds it all.
func runSubscribers(specPath, outPath string, lifetime time.Duration) error {
	// This process stands in for thousands of browsers on other machines, but here it
	// shares 2 cores with the service, PostgreSQL and the Langflow stand-in. When it
	// collects garbage, its idle mark workers take every core it may use for 10-30 ms,
	// and those pauses were a third of the slow invokes in the loaded run (checked against
	// GODEBUG=gctrace=1). One core, and fewer collections, keep it from measuring itself;
	// it needs a quarter of a core to read every message.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400)
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var sp spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return err
	}
	if sp.Query == "" {
		sp.Query = queryRecent
	}
	if _, err := h.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "file limit:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, lifetime)
	defer cancel()

	total := 0
	for _, c := range sp.Conns {
		total += len(c.Subs)
	}
	var firstOrFailed atomic.Int64
	allIn := make(chan struct{})
	var once sync.Once
	mark := func() {
		if firstOrFailed.Add(1) == int64(total) {
			once.Do(func() { close(allIn) })
		}
	}
	rep := &report{Hist: map[int64]int{}}
	var mu sync.Mutex // guards rep
	conns := make([]*subConn, len(sp.Conns))
	start := time.Now()
	// Opening is bounded in parallel so the service sees a ramp, not a SYN flood, and
	// its accept queue does not overflow.
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, cs := range sp.Conns {
		sc := &subConn{spec: cs, subs: map[string]*subResult{}, hist: map[int64]int{}, mark: mark}
		for _, s := range cs.Subs {
			sc.subs[fmt.Sprint("s", s.Idx)] = &subResult{Idx: s.Idx, Seen: map[uint64]int64{}}
		}
		conns[i] = sc
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			err := sc.open(ctx, sp.URL, sp.Query, func() { <-sem })
			if err != nil {
				mu.Lock()
				rep.ConnErrors = append(rep.ConnErrors, err.Error())
				mu.Unlock()
				sc.failAll(err.Error())
				return
			}
			sc.read(ctx)
		}()
	}
	select {
	case <-allIn:
	case <-ctx.Done():
		return ctx.Err()
	}
	rep.OpenTook = time.Since(start)
	failed := 0
	for _, sc := range conns {
		sc.mu.Lock()
		for _, s := range sc.subs {
			if s.Err != "" {
				failed++
			}
		}
		sc.mu.Unlock()
	}
	fmt.Printf("subscribed %d %d\n", total-failed, failed)
	// Hold until the parent closes stdin (or the lifetime ends).
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	for _, sc := range conns {
		sc.close()
	}
	cancel()
	wg.Wait()
	for _, sc := range conns {
		for _, s := range sc.subs {
			rep.Subs = append(rep.Subs, s)
		}
		for k, v := range sc.hist {
			rep.Hist[k] += v
		}
	}
	f, err := os.Create(outPath)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(rep); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// subConn is one graphql-transport-ws connection of one subject.
type subConn struct {
	spec connSpec
	c    *websocket.Conn
	mark func()

	mu   sync.Mutex // guards subs and hist (read by the main goroutine at the end)
	subs map[string]*subResult
	hist map[int64]int
}

func (sc *subConn) open(ctx context.Context, url, query string, dialed func()) error {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	dialed()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	sc.c = c
	c.SetReadLimit(1 << 20)
	send := func(v any) error {
		b, _ := json.Marshal(v)
		return c.Write(dctx, websocket.MessageText, b)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + sc.spec.Token}}); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for {
		_, b, err := c.Read(dctx)
		if err != nil {
			return fmt.Errorf("waiting for connection_ack: %w", err)
		}
		if strings.Contains(string(b), `"connection_ack"`) {
			break
		}
	}
	for _, s := range sc.spec.Subs {
		if err := send(map[string]any{"type": "subscribe", "id": fmt.Sprint("s", s.Idx),
			"payload": map[string]any{"query": fmt.Sprintf(query, s.Filter)}}); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	return nil
}

type wsMsg struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Payload struct {
		Data *struct {
			UsageStats *struct {
				Day struct {
					Requests int64 `json:"requests"`
				} `json:"day"`
				Recent []struct {
					RequestID string `json:"requestID"`
				} `json:"recent"`
				Resynced bool `json:"resynced"`
			} `json:"usageStats"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	} `json:"payload"`
}

// read records every message until the connection or ctx ends. Each is read into the
// same buffer (nothing recorded keeps a reference to it).
func (sc *subConn) read(ctx context.Context) {
	var buf bytes.Buffer
	for {
		buf.Reset()
		_, r, err := sc.c.Reader(ctx)
		if err == nil {
			_, err = buf.ReadFrom(r)
		}
		now := time.Now()
		if err != nil {
			sc.failAll("connection ended: " + err.Error())
			return
		}
		if b := buf.Bytes(); !sc.readFast(b, now) {
			sc.readDecoded(b, now)
		}
	}
}

// idKey is the key of a request id in subResult.Seen: a 64-bit FNV-1a hash, so that
// recording the ids of 20,000 messages a second allocates no strings (a collision among
// the run's few thousand ids is as good as impossible).
func idKey(id []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range id {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// readDecoded records any message, decoding it in full.
func (sc *subConn) readDecoded(b []byte, now time.Time) {
	var m wsMsg
	if json.Unmarshal(b, &m) != nil {
		return
	}
	if m.Type == "ping" {
		sc.pong() // the service disconnects a client that does not answer its keepalive
		return
	}
	sc.mu.Lock()
	sc.hist[now.Unix()]++
	s := sc.subs[m.ID]
	if s == nil {
		sc.mu.Unlock()
		return // ping and the like
	}
	switch {
	case m.Type == "next" && m.Payload.Data != nil && m.Payload.Data.UsageStats != nil:
		st := m.Payload.Data.UsageStats
		t := now.UnixNano()
		if !s.First {
			s.First, s.Initial = true, st.Day.Requests
			s.Counts = append(s.Counts, [2]int64{t, st.Day.Requests})
			sc.mu.Unlock()
			sc.mark()
			return
		}
		s.Msgs++
		if st.Resynced {
			s.Resynced++
		}
		if last := s.Counts[len(s.Counts)-1][1]; st.Day.Requests > last {
			s.Counts = append(s.Counts, [2]int64{t, st.Day.Requests})
		}
		for _, r := range st.Recent {
			if k := idKey([]byte(r.RequestID)); s.Seen[k] == 0 {
				s.Seen[k] = t
			}
		}
	case m.Type == "next" || m.Type == "error" || m.Type == "complete":
		if s.Err == "" {
			s.Err = m.Type + ": " + string(m.Payload.Errors)
			if !s.First {
				sc.mu.Unlock()
				sc.mark()
				return
			}
		}
	}
	sc.mu.Unlock()
}

// pong answers the service's keepalive ping, from the reading goroutine.
func (sc *subConn) pong() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = sc.c.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
}

// readFast records a "next" message after a subscription's first, in the exact shape the
// service writes for the bench's selection, without decoding it: at 20,000 messages a
// second a full decode cost this process more CPU than the service spent sending them,
// on the same 2 cores, and so measured the client more than the service. It reports
// false, having recorded nothing, for anything else; read then decodes in full.
func (sc *subConn) readFast(b []byte, now time.Time) bool {
	id, rest, ok := cutBetween(b, `{"id":"`, `","type":"next","payload":{"data":{"usageStats":{"day":{"requests":`)
	if !ok {
		return false
	}
	num, rest, ok := bytes.Cut(rest, []byte("}"))
	if !ok {
		return false
	}
	requests, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return false
	}
	resynced := bytes.HasSuffix(rest, []byte(`"resynced":true}}}}`))
	if !resynced && !bytes.HasSuffix(rest, []byte(`"resynced":false}}}}`)) {
		return false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := sc.subs[string(id)]
	if s == nil || !s.First {
		return false
	}
	sc.hist[now.Unix()]++
	t := now.UnixNano()
	s.Msgs++
	if resynced {
		s.Resynced++
	}
	if last := s.Counts[len(s.Counts)-1][1]; requests > last {
		s.Counts = append(s.Counts, [2]int64{t, requests})
	}
	const field = `{"requestID":"`
	for {
		i := bytes.Index(rest, []byte(field))
		if i < 0 {
			break
		}
		rest = rest[i+len(field):]
		end := bytes.IndexByte(rest, '"')
		if end < 0 {
			break
		}
		// The id as encoded, not unescaped: the bench's ids are plain ASCII, which JSON
		// leaves as is.
		if k := idKey(rest[:end]); s.Seen[k] == 0 {
			s.Seen[k] = t
		}
		rest = rest[end:]
	}
	return true
}

// cutBetween returns what lies between prefix (at the start of b) and the first sep
// after it, and what follows sep.
func cutBetween(b []byte, prefix, sep string) (between, after []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(prefix))
	if !ok {
		return nil, nil, false
	}
	return bytes.Cut(rest, []byte(sep))
}

// failAll marks the subscriptions that never got their first message as failed.
func (sc *subConn) failAll(why string) {
	sc.mu.Lock()
	var n int
	for _, s := range sc.subs {
		if !s.First && s.Err == "" {
			s.Err = why
			n++
		}
	}
	sc.mu.Unlock()
	for range n {
		sc.mark()
	}
}

func (sc *subConn) close() {
	if sc.c != nil {
		_ = sc.c.CloseNow() // no close handshake: 10,000 of them would outlast the run
	}
}
