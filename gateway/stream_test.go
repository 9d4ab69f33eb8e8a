package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
)

// sseEvent is one received event and when it arrived.
type sseEvent struct {
	name string
	data string
	at   time.Time
}

// readSSE reads a native event stream as it arrives; onEvent runs on each event before
// the next is read (so a test can look at the database the moment "end" arrives).
func readSSE(t testing.TB, resp *http.Response, onEvent func(sseEvent)) []sseEvent {
	t.Helper()
	var events []sseEvent
	sc := bufio.NewScanner(resp.Body)
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" || cur.data != "" {
				cur.at = time.Now()
				if onEvent != nil {
					onEvent(cur)
				}
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return events
}

func (e *env) stream(key, body string, header map[string]string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/agent-gateway/invoke/", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStreamSSE(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		const delay = 40 * time.Millisecond
		e := newEnv(t, envOptions{driver: driver, echo: echoruntime.Options{TokenDelay: delay}})
		f := e.seed(fixtureOptions{})
		resp := e.stream(e.secret(f), `{"input":"one two three four","stream":true,"session_id":"sse"}`, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		recordedAtEnd := -1
		events := readSSE(t, resp, func(ev sseEvent) {
			if ev.name == "end" {
				var end struct {
					RequestID string `json:"request_id"`
				}
				_ = json.Unmarshal([]byte(ev.data), &end)
				n, err := e.client.UsageRecord.Query().Where(usagerecord.RequestID(end.RequestID)).Count(sys())
				if err != nil {
					t.Error(err)
				}
				recordedAtEnd = n
			}
		})
		var text strings.Builder
		var tokens []sseEvent
		for _, ev := range events {
			if ev.name == "token" {
				var d struct {
					Chunk string `json:"chunk"`
				}
				if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
					t.Fatal(err)
				}
				text.WriteString(d.Chunk)
				tokens = append(tokens, ev)
			}
		}
		if len(tokens) < 4 {
			t.Fatalf("want one event per token, got %d: %+v", len(tokens), events)
		}
		// Flushed one by one: the tokens arrive spread over the runtime's delays, not at once.
		if spread := tokens[len(tokens)-1].at.Sub(tokens[0].at); spread < 2*delay {
			t.Errorf("tokens arrived within %v: not flushed per event", spread)
		}
		if text.String() != "echo: one two three four" {
			t.Errorf("streamed text %q", text.String())
		}
		last := events[len(events)-1]
		if last.name != "end" {
			t.Fatalf("last event %q", last.name)
		}
		var end map[string]any
		_ = json.Unmarshal([]byte(last.data), &end)
		if end["output"] != "echo: one two three four" || end["session_id"] != "sse" || end["usage"] == nil {
			t.Errorf("end event = %v", end)
		}
		if recordedAtEnd != 1 {
			t.Fatalf("usage record not committed when the end event arrived (rows: %d)", recordedAtEnd)
		}
	})
}

func TestStreamByAcceptHeader(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	resp := e.stream(e.secret(f), `{"input":"hi"}`, map[string]string{"Accept": "text/event-stream"})
	events := readSSE(t, resp, nil)
	if len(events) == 0 || events[len(events)-1].name != "end" {
		t.Fatalf("events %+v", events)
	}
}

func TestStreamWithoutEndIsAnError(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	e.rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", DropStreamBeforeEnd: true})
	resp := e.stream(e.secret(f), `{"input":"cut me off","stream":true}`, nil)
	events := readSSE(t, resp, nil)
	if len(events) < 2 {
		t.Fatalf("events %+v", events)
	}
	last := events[len(events)-1]
	if last.name != "error" {
		t.Fatalf("a truncated stream must end in an error event, got %+v", events)
	}
	for _, ev := range events {
		if ev.name == "end" {
			t.Fatal("a truncated stream produced an end event")
		}
	}
	var d map[string]string
	_ = json.Unmarshal([]byte(last.data), &d)
	if d["code"] != "RUNTIME_ERROR" || d["message"] == "" {
		t.Fatalf("error event %v", d)
	}
	rows := e.usageRows()
	if len(rows) != 1 || rows[0].Status != 502 || rows[0].ErrorCode != "RUNTIME_ERROR" || rows[0].OutputTokens == 0 {
		t.Fatalf("rows %+v", rows)
	}
}

func TestStreamFailureBeforeFirstTokenIsJSON(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	e.rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Status: 500, Detail: "boom"})
	resp := e.stream(e.secret(f), `{"input":"x","stream":true}`, nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestClientLeavingMidStreamIsMetered(t *testing.T) {
	e := newEnv(t, envOptions{echo: echoruntime.Options{TokenDelay: 100 * time.Millisecond}})
	f := e.seed(fixtureOptions{})
	resp := e.stream(e.secret(f), `{"input":"a b c d e f g h","stream":true}`, nil)
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first token's event line
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if rows := e.usageRows(); len(rows) == 1 {
			if rows[0].Status != 499 || rows[0].ErrorCode != "CLIENT_CLOSED_REQUEST" || rows[0].OutputTokens == 0 {
				t.Fatalf("row %+v", rows[0])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("a call whose client left was not metered")
}

func TestStreamUnrecordedEndsInError(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.recorder.Close(ctx); err != nil {
		t.Fatal(err)
	}
	events := readSSE(t, e.stream(key, `{"input":"a b c","stream":true}`, nil), nil)
	last := events[len(events)-1]
	if last.name != "error" || !strings.Contains(last.data, "USAGE_NOT_RECORDED") {
		t.Fatalf("an unmetered stream must not end with end: %+v", events)
	}
}
