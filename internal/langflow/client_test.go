package langflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/testsupport/fixtures"

	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
)

const testKey = "lf-test-key-7f3a9c2e5b"

func newClient(t *testing.T, base string, mod func(*Options)) *Client {
	t.Helper()
	opts := Options{BaseURL: base, APIKey: testKey, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func req(input string) RunRequest {
	return RunRequest{InputValue: input, SessionID: "sess-42"}
}

// assertNoKey checks the secret never reaches an error string.
func assertNoKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Fatalf("API key leaked into error: %q", err)
	}
}

func TestRunEchoSendsSessionTweaksAndKey(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{APIKey: testKey})
	c := newClient(t, srv.URL, nil)
	tweaks := map[string]any{"Prompt-xvuxC": map[string]any{"system_prompt": "You are Ada, a pirate."}}
	res, err := c.Run(context.Background(), "flow-1", RunRequest{
		InputValue: "hello <there> & you", SessionID: "sess-42", Tweaks: tweaks, OutputComponent: "ChatOutput-echo",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[You are Ada, a pirate.] echo: hello <there> & you"; res.Text != want {
		t.Fatalf("text = %q, want %q", res.Text, want)
	}
	if res.SessionID != "sess-42" {
		t.Fatalf("session = %q", res.SessionID)
	}
	if res.TokensReported || res.InputTokens != EstimateTokens("hello <there> & you") || res.OutputTokens != EstimateTokens(res.Text) {
		t.Fatalf("usage = %+v", res)
	}
	var sent map[string]any
	if err := json.Unmarshal(rt.LastRunBody(), &sent); err != nil {
		t.Fatal(err)
	}
	if sent["session_id"] != "sess-42" || sent["input_type"] != "chat" || sent["output_type"] != "chat" || sent["output_component"] != "ChatOutput-echo" {
		t.Fatalf("sent body = %v", sent)
	}
	if got := fmt.Sprint(sent["tweaks"]); !strings.Contains(got, "You are Ada") {
		t.Fatalf("tweaks not sent: %v", got)
	}
}

func TestRunReportedUsage(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{ReportUsage: true})
	c := newClient(t, srv.URL, nil)
	res, err := c.Run(context.Background(), "flow-1", req("twelve chars"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TokensReported || res.InputTokens != 3 || res.OutputTokens != EstimateTokens("echo: twelve chars") {
		t.Fatalf("usage = %d/%d reported=%v", res.InputTokens, res.OutputTokens, res.TokensReported)
	}
}

func TestRunValidatesBeforeSending(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	for name, r := range map[string]RunRequest{
		"no session":   {InputValue: "hi"},
		"input type":   {InputValue: "hi", SessionID: "s", InputType: "voice"},
		"output type":  {InputValue: "hi", SessionID: "s", OutputType: "json"},
		"bad tweaks":   {InputValue: "hi", SessionID: "s", Tweaks: map[string]any{"x": func() {}}},
		"empty flowID": {InputValue: "hi", SessionID: "s"},
	} {
		flow := "flow-1"
		if name == "empty flowID" {
			flow = " "
		}
		if _, err := c.Run(context.Background(), flow, r); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", name, err)
		}
	}
	if rt.Calls() != 0 {
		t.Fatalf("invalid requests reached Langflow: %d", rt.Calls())
	}
}

func TestAPIKeyRejectedNeverLeaks(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{APIKey: "the-right-key-123"})
	c := newClient(t, srv.URL, nil)
	_, err := c.Run(context.Background(), "flow-1", req("hi"))
	var le *Error
	if !errors.As(err, &le) || le.Kind != ErrUpstream || le.Status != http.StatusUnauthorized {
		t.Fatalf("err = %#v", err)
	}
	assertNoKey(t, err)
	// Auth failures are our misconfiguration, not an outage.
	if c.BreakerState() != "closed" {
		t.Fatal("401 should not count against the breaker")
	}
}

func TestDetailEchoingKeyIsRedacted(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	rt.SetFault(echoruntime.Fault{Status: 400, Detail: "Invalid API key " + testKey + " for this flow"})
	_, err := c.Run(context.Background(), "flow-1", req("hi"))
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v", err)
	}
	assertNoKey(t, err)
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("err = %q", err)
	}
	if s := fmt.Sprintf("%v %+v %#v", Options{APIKey: testKey}, Options{APIKey: testKey}, Options{APIKey: testKey}); strings.Contains(s, testKey) {
		t.Fatalf("Options printed the key: %s", s)
	}
}

func TestErrorDetailShapesOverHTTP(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	cases := []struct {
		name   string
		detail any
		want   string
	}{
		{"string", "Flow input is invalid", "Flow input is invalid"},
		{"json string", `{"message": "Error running graph: Error building Component Language Model"}`, "Error running graph: Error building Component Language Model"},
		{"array", []any{map[string]any{"type": "missing", "loc": []any{"body", "input_value"}, "msg": "Field required"}}, "body.input_value: Field required"},
		{"object", map[string]any{"message": "Invalid tweaks", "traceback": pyTraceback}, "Invalid tweaks"},
		{"traceback", "Error building vertex Prompt: bad template\n" + pyTraceback, "Error building vertex Prompt: bad template"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt.SetFault(echoruntime.Fault{Status: 400, Detail: tc.detail})
			_, err := c.Run(context.Background(), "flow-1", req("hi"))
			var le *Error
			if !errors.As(err, &le) || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err = %v", err)
			}
			if le.Detail != tc.want {
				t.Fatalf("detail = %q, want %q", le.Detail, tc.want)
			}
			for _, leak := range []string{"Traceback", "site-packages", "sk-live-secret", "File \""} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error leaks %q: %q", leak, err)
				}
			}
		})
	}
}

func TestErrorKindMapping(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{StrictFlows: true})
	c := newClient(t, srv.URL, func(o *Options) { o.Breaker.ConsecutiveFailures = 1000 })

	if _, err := c.Run(context.Background(), "no-such-flow", req("hi")); !errors.Is(err, ErrNotFound) || StatusCode(err) != 404 {
		t.Fatalf("unknown flow: %v", err)
	}
	cases := []struct {
		status int
		kind   Kind
	}{
		{400, ErrBadRequest}, {422, ErrBadRequest}, {404, ErrNotFound}, {408, ErrTimeout},
		{429, ErrUnavailable}, {500, ErrUpstream}, {502, ErrUpstream}, {503, ErrUnavailable}, {504, ErrTimeout},
	}
	for _, tc := range cases {
		rt.SetFault(echoruntime.Fault{Status: tc.status, Detail: "boom"})
		_, err := c.Run(context.Background(), "any", req("hi"))
		var le *Error
		if !errors.As(err, &le) || le.Kind != tc.kind || le.Status != tc.status || le.Op != "run" {
			t.Errorf("status %d: err = %v, want %s", tc.status, err, tc.kind)
		}
	}
	rt.SetFault(echoruntime.Fault{Status: 502, RawBody: "<html><h1>502 Bad Gateway</h1></html>"})
	_, err := c.Run(context.Background(), "any", req("hi"))
	if !errors.Is(err, ErrUpstream) || strings.Contains(err.Error(), "<html>") {
		t.Fatalf("html 502: %v", err)
	}

	rt.SetFault(echoruntime.Fault{CloseConnection: true})
	if _, err := c.Run(context.Background(), "any", req("hi")); !errors.Is(err, ErrUpstream) {
		t.Fatalf("abrupt close: %v", err)
	}
}

func TestUnparseableSuccessIsUpstream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"session_id": "s", "outputs": [{"outputs": [{"results": {"message": {"text": "cut`))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	_, err := c.Run(context.Background(), "f", req("hi"))
	if !errors.Is(err, ErrUpstream) || StatusCode(err) != 502 {
		t.Fatalf("err = %v", err)
	}
}

func TestOversizedResponseRefused(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, func(o *Options) { o.MaxResponseBytes = 256 })
	if _, err := c.Run(context.Background(), "f", req("hi")); !errors.Is(err, ErrUpstream) {
		t.Fatalf("err = %v", err)
	}
}

func TestTimeout(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	rt.SetFault(echoruntime.Fault{Delay: 3 * time.Second})
	c := newClient(t, srv.URL, func(o *Options) { o.Timeout = 100 * time.Millisecond })
	start := time.Now()
	_, err := c.Run(context.Background(), "f", req("hi"))
	if !errors.Is(err, ErrTimeout) || StatusCode(err) != 504 {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout took %v", d)
	}

	// The caller's own deadline is a timeout too.
	c2 := newClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c2.Run(ctx, "f", req("hi")); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v", err)
	}
}

func TestCancellationReturnsPromptly(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	rt.SetFault(echoruntime.Fault{Delay: 5 * time.Second})
	c := newClient(t, srv.URL, func(o *Options) { o.Breaker.ConsecutiveFailures = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Run(ctx, "f", req("hi"))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || StatusCode(err) != 499 {
		t.Fatalf("err = %v", err)
	}
	if c.BreakerState() != "closed" {
		t.Fatal("a cancellation tripped the breaker")
	}
}

// countingDialer counts dials so tests can prove an open breaker does not
// touch the network.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func TestBreakerTripsOnDeadUpstreamAndFailsFast(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close() // nothing listens there any more: connection refused

	var d countingDialer
	var transitions []string
	var mu sync.Mutex
	c := newClient(t, dead, func(o *Options) {
		o.DialContext = d.dial
		o.Breaker = BreakerSettings{ConsecutiveFailures: 3, OpenDuration: time.Minute, OnStateChange: func(from, to string) {
			mu.Lock()
			transitions = append(transitions, from+"->"+to)
			mu.Unlock()
		}}
	})
	for i := 0; i < 3; i++ {
		_, err := c.Run(context.Background(), "f", req("hi"))
		if !errors.Is(err, ErrUnavailable) || StatusCode(err) != 503 {
			t.Fatalf("call %d: err = %v", i, err)
		}
		assertNoKey(t, err)
	}
	if c.BreakerState() != "open" {
		t.Fatalf("breaker = %s after 3 refused connects", c.BreakerState())
	}
	dials := d.n.Load()
	if dials < 3 {
		t.Fatalf("dials = %d", dials)
	}
	for i := 0; i < 20; i++ {
		start := time.Now()
		_, err := c.Run(context.Background(), "f", req("hi"))
		if el := time.Since(start); el > 50*time.Millisecond {
			t.Fatalf("open breaker call took %v", el)
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	if _, err := c.Stream(context.Background(), "f", req("hi"), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream through open breaker: %v", err)
	}
	if _, err := c.CreateFlow(context.Background(), json.RawMessage(`{"name":"x"}`)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("create through open breaker: %v", err)
	}
	if got := d.n.Load(); got != dials {
		t.Fatalf("open breaker dialed: %d -> %d", dials, got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transitions) != 1 || transitions[0] != "closed->open" {
		t.Fatalf("transitions = %v", transitions)
	}
}

func TestBreakerHalfOpenProbeCloses(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, func(o *Options) {
		o.Breaker = BreakerSettings{ConsecutiveFailures: 2, OpenDuration: 100 * time.Millisecond}
	})
	rt.SetFault(echoruntime.Fault{Status: 500, Detail: "database is locked"})
	for i := 0; i < 2; i++ {
		if _, err := c.Run(context.Background(), "f", req("hi")); !errors.Is(err, ErrUpstream) {
			t.Fatalf("err = %v", err)
		}
	}
	calls := rt.Calls()
	if _, err := c.Run(context.Background(), "f", req("hi")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open: %v", err)
	}
	if rt.Calls() != calls {
		t.Fatal("open breaker reached upstream")
	}
	rt.ClearFault()
	time.Sleep(150 * time.Millisecond)
	if c.BreakerState() != "half-open" {
		t.Fatalf("state = %s", c.BreakerState())
	}
	if _, err := c.Run(context.Background(), "f", req("hi")); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if c.BreakerState() != "closed" {
		t.Fatalf("state after successful probe = %s", c.BreakerState())
	}
}

func TestClientErrorsDoNotTripBreaker(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, func(o *Options) { o.Breaker.ConsecutiveFailures = 2 })
	rt.SetFault(echoruntime.Fault{Status: 422, Detail: []any{"bad"}})
	for i := 0; i < 10; i++ {
		if _, err := c.Run(context.Background(), "f", req("hi")); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v", err)
		}
	}
	if c.BreakerState() != "closed" {
		t.Fatal("4xx tripped the breaker")
	}
	if rt.Calls() != 10 {
		t.Fatalf("calls = %d", rt.Calls())
	}
}

func TestStreamFullText(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{APIKey: testKey, TokenDelay: 5 * time.Millisecond, ReportUsage: true})
	c := newClient(t, srv.URL, nil)
	var chunks []string
	res, err := c.Stream(context.Background(), "flow-1", req("tell me a long story"), func(s string) error {
		chunks = append(chunks, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "echo: tell me a long story"
	if res.Text != want || strings.Join(chunks, "") != want {
		t.Fatalf("text = %q, chunks = %q", res.Text, chunks)
	}
	if len(chunks) < 3 {
		t.Fatalf("expected several tokens, got %q", chunks)
	}
	if res.SessionID != "sess-42" || !res.TokensReported {
		t.Fatalf("result = %+v", res)
	}
	if !strings.Contains(string(rt.LastRunBody()), `"session_id":"sess-42"`) {
		t.Fatalf("body = %s", rt.LastRunBody())
	}
}

func TestStreamWithoutEndIsIncomplete(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	for name, f := range map[string]echoruntime.Fault{
		"dropped before end": {DropStreamBeforeEnd: true},
		"connection aborted": {CloseConnection: true},
	} {
		t.Run(name, func(t *testing.T) {
			rt.SetFault(f)
			var got strings.Builder
			_, err := c.Stream(context.Background(), "flow-1", req("one two three"), func(s string) error {
				got.WriteString(s)
				return nil
			})
			if !errors.Is(err, ErrStreamIncomplete) || StatusCode(err) != 502 {
				t.Fatalf("err = %v (partial %q)", err, got.String())
			}
		})
	}
}

// sseServer serves a hand-written event stream.
func sseServer(t *testing.T, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("stream") != "true" {
			t.Errorf("stream query missing: %s", r.URL)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func endEvent(text string) string {
	return `{"event": "end", "data": {"result": ` + wrap(`{"results": {"message": {"text": "`+text+`"}}}`) + `}}`
}

func TestStreamVariants(t *testing.T) {
	t.Run("no tokens: whole answer delivered once", func(t *testing.T) {
		srv := sseServer(t, `{"event": "add_message", "data": {"sender": "User", "text": "hi"}}`+"\n\n"+
			`{"event": "add_message", "data": {"sender": "Machine", "text": "Full answer"}}`+"\n\n"+endEvent("Full answer")+"\n\n")
		c := newClient(t, srv.URL, nil)
		var chunks []string
		res, err := c.Stream(context.Background(), "f", req("hi"), func(s string) error { chunks = append(chunks, s); return nil })
		if err != nil || res.Text != "Full answer" || len(chunks) != 1 || chunks[0] != "Full answer" {
			t.Fatalf("res = %+v, chunks = %q, err = %v", res, chunks, err)
		}
	})
	t.Run("SSE data prefix, CRLF and comments", func(t *testing.T) {
		srv := sseServer(t, ": keepalive\r\n\r\nevent: token\r\ndata: {\"event\": \"token\", \"data\": {\"chunk\": \"Hi\", \"id\": \"m1\"}}\r\n\r\n"+
			"data: "+endEvent("Hi")+"\r\n")
		c := newClient(t, srv.URL, nil)
		res, err := c.Stream(context.Background(), "f", req("hi"), nil)
		if err != nil || res.Text != "Hi" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("end without result uses tokens", func(t *testing.T) {
		srv := sseServer(t, `{"event": "token", "data": {"chunk": "a", "id": "m"}}`+"\n\n"+
			`{"event": "token", "data": {"chunk": "b", "id": "m"}}`+"\n\n"+`{"event": "end", "data": {}}`+"\n\n")
		c := newClient(t, srv.URL, nil)
		res, err := c.Stream(context.Background(), "f", req("hi"), nil)
		if err != nil || res.Text != "ab" || res.TokensReported {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("error event", func(t *testing.T) {
		srv := sseServer(t, `{"event": "token", "data": {"chunk": "a", "id": "m"}}`+"\n\n"+
			`{"event": "error", "data": {"error": `+quote("Error running graph: model failed\n"+pyTraceback)+`}}`+"\n\n")
		c := newClient(t, srv.URL, nil)
		_, err := c.Stream(context.Background(), "f", req("hi"), nil)
		var le *Error
		if !errors.As(err, &le) || le.Kind != ErrUpstream || le.Detail != "Error running graph: model failed" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("oversized line", func(t *testing.T) {
		srv := sseServer(t, `{"event": "token", "data": {"chunk": "`+strings.Repeat("x", 4096)+`"}}`+"\n\n"+endEvent("x")+"\n\n")
		c := newClient(t, srv.URL, func(o *Options) { o.MaxEventBytes = 1024 })
		if _, err := c.Stream(context.Background(), "f", req("hi"), nil); !errors.Is(err, ErrUpstream) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage event", func(t *testing.T) {
		srv := sseServer(t, "not json at all\n\n")
		c := newClient(t, srv.URL, nil)
		if _, err := c.Stream(context.Background(), "f", req("hi"), nil); !errors.Is(err, ErrUpstream) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("JSON answer to a stream request", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(wrap(chatOutput)))
		}))
		t.Cleanup(srv.Close)
		c := newClient(t, srv.URL, nil)
		var got string
		res, err := c.Stream(context.Background(), "f", req("hi"), func(s string) error { got += s; return nil })
		if err != nil || res.Text != "Hello! How can I help?" || got != res.Text {
			t.Fatalf("res = %+v, got = %q, err = %v", res, got, err)
		}
	})
}

func TestStreamCallbackErrorPassesThrough(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, func(o *Options) { o.Breaker.ConsecutiveFailures = 1 })
	stop := errors.New("client went away")
	_, err := c.Stream(context.Background(), "f", req("a b c d"), func(string) error { return stop })
	if err != stop {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if c.BreakerState() != "closed" {
		t.Fatal("callback error tripped the breaker")
	}
}

func TestStreamTimeoutAndCancel(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{TokenDelay: time.Second})
	c := newClient(t, srv.URL, func(o *Options) { o.StreamTimeout = 150 * time.Millisecond })
	start := time.Now()
	_, err := c.Stream(context.Background(), "f", req("a b c d e"), nil)
	if !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}

	c2 := newClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	start = time.Now()
	_, err = c2.Stream(ctx, "f", req("a b c d e"), func(string) error { cancel(); return nil })
	if !errors.Is(err, ErrCanceled) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

// fixture reads a Langflow export from the shared fixtures (see testsupport/fixtures).
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	return fixtures.Read(t, "langflow", name)
}

func TestCreateRunDeleteRealExport(t *testing.T) {
	export := fixture(t, "Basic Prompting.json")
	var orig struct{ ID, Name string }
	if err := json.Unmarshal(export, &orig); err != nil {
		t.Fatal(err)
	}
	rt, srv := echotest.Start(t, echoruntime.Options{APIKey: testKey, StrictFlows: true})
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()

	f1, err := c.CreateFlow(ctx, export)
	if err != nil {
		t.Fatal(err)
	}
	if f1.ID == "" || f1.ID == orig.ID || f1.Name != orig.Name {
		t.Fatalf("flow = %+v (export id %s)", f1, orig.ID)
	}
	f2, err := c.CreateFlow(ctx, export)
	if err != nil {
		t.Fatal(err)
	}
	if f2.ID == f1.ID || f2.Name != orig.Name+" (1)" {
		t.Fatalf("second import = %+v", f2)
	}
	res, err := c.Run(ctx, f1.ID, req("hi"))
	if err != nil || res.Text != "echo: hi" {
		t.Fatalf("run imported flow: %+v %v", res, err)
	}
	if err := c.DeleteFlow(ctx, f1.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFlow(ctx, f1.ID); err != nil {
		t.Fatalf("second delete should be a no-op: %v", err)
	}
	if _, err := c.Run(ctx, f1.ID, req("hi")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("run deleted flow: %v", err)
	}
	if ids := rt.FlowIDs(); len(ids) != 1 || ids[0] != f2.ID {
		t.Fatalf("flows left = %v", ids)
	}

	if _, err := c.CreateFlow(ctx, json.RawMessage(`[1]`)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("non-object export: %v", err)
	}
	if _, err := c.CreateFlow(ctx, json.RawMessage(`{"data": {}}`)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("nameless export: %v", err)
	}
	rt.SetFault(echoruntime.Fault{Status: 500, Detail: "boom"})
	if err := c.DeleteFlow(ctx, f2.ID); !errors.Is(err, ErrUpstream) {
		t.Fatalf("delete on 500: %v", err)
	}
}

func TestEndpointNameClash(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	export := json.RawMessage(`{"name": "Support", "endpoint_name": "support", "data": {"nodes": [], "edges": []}}`)
	a, err := c.CreateFlow(context.Background(), export)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateFlow(context.Background(), export)
	if err != nil {
		t.Fatal(err)
	}
	if a.EndpointName != "support" || b.EndpointName != "support-1" || b.Name != "Support (1)" {
		t.Fatalf("a = %+v, b = %+v", a, b)
	}
}

func TestHealthAndReady(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{APIKey: testKey})
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	rt.SetFault(echoruntime.Fault{PathPrefix: "/health_check", Status: 503, Detail: map[string]any{"status": "nok", "db": "error: could not connect"}})
	if err := c.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ready: %v", err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health should be unaffected: %v", err)
	}
	rt.SetFault(echoruntime.Fault{PathPrefix: "/health", Status: 500})
	if err := c.Health(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("health: %v", err)
	}
	srv.Close()
	if err := c.Health(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("health on closed server: %v", err)
	}
}

func TestBaseURLWithPrefix(t *testing.T) {
	rt := echoruntime.New(echoruntime.Options{})
	mux := http.NewServeMux()
	mux.Handle("/langflow/", http.StripPrefix("/langflow", rt))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL+"/langflow/", nil)
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Run(context.Background(), "a flow/with slash", req("x")); err != nil || res.Text != "echo: x" {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := New(Options{BaseURL: "langflow:7860"}); err == nil {
		t.Fatal("relative base URL accepted")
	}
}

func TestConcurrentRuns(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	c := newClient(t, srv.URL, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fmt.Sprintf("msg %d", i)
			res, err := c.Run(context.Background(), "f", RunRequest{InputValue: in, SessionID: fmt.Sprint(i)})
			if err == nil && (res.Text != "echo: "+in || res.SessionID != fmt.Sprint(i)) {
				err = fmt.Errorf("got %+v for %q", res, in)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rt.Calls() != 200 {
		t.Fatalf("calls = %d", rt.Calls())
	}
}

func TestReadyChecksStatusField(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status": "nok", "chat": "ok", "db": "error check the server logs"}`))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	err := c.Ready(context.Background())
	var le *Error
	if !errors.As(err, &le) || le.Kind != ErrUnavailable || !strings.Contains(le.Detail, "db: error") {
		t.Fatalf("err = %v", err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Fatalf("liveness ignores the body: %v", err)
	}
}
