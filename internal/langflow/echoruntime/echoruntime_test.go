package echoruntime_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
)

func post(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestAPIKeyAndPublicHealth(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{APIKey: "k-123456"})
	resp := post(t, srv.URL+"/api/v1/run/f", "", `{"input_value": "hi"}`)
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusUnauthorized || body["detail"] == nil {
		t.Fatalf("status %d body %v", resp.StatusCode, body)
	}
	for _, p := range []string{"/health", "/health_check"} {
		r, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", p, r.StatusCode)
		}
	}
}

func TestRunShapeAndSessionDefault(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{})
	// Without session_id Langflow falls back to the flow id.
	resp := post(t, srv.URL+"/api/v1/run/my-flow", "", `{"input_value": "hi", "tweaks": {"system_prompt": "Be brief."}}`)
	var body struct {
		SessionID string `json:"session_id"`
		Outputs   []struct {
			Outputs []struct {
				Results struct {
					Message struct {
						Text string `json:"text"`
						Data struct {
							Text string `json:"text"`
						} `json:"data"`
					} `json:"message"`
				} `json:"results"`
				Artifacts struct {
					Message string `json:"message"`
				} `json:"artifacts"`
				Messages []struct {
					Message string `json:"message"`
				} `json:"messages"`
			} `json:"outputs"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	o := body.Outputs[0].Outputs[0]
	want := "[Be brief.] echo: hi"
	if body.SessionID != "my-flow" || o.Results.Message.Text != want || o.Results.Message.Data.Text != want ||
		o.Artifacts.Message != want || o.Messages[0].Message != want {
		t.Fatalf("body = %+v", body)
	}

	bad := post(t, srv.URL+"/api/v1/run/my-flow", "", `{"input_value": `)
	if bad.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("malformed body: %d", bad.StatusCode)
	}
}

func TestStreamFraming(t *testing.T) {
	_, srv := echotest.Start(t, echoruntime.Options{})
	resp := post(t, srv.URL+"/api/v1/run/f?stream=true", "", `{"input_value": "one two", "session_id": "s"}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		var ev struct {
			Event string         `json:"event"`
			Data  map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event is not bare JSON: %q", line)
		}
		events = append(events, ev.Event)
		if ev.Event == "end" && ev.Data["result"] == nil {
			t.Fatal("end without result")
		}
	}
	got := strings.Join(events, ",")
	if got != "add_message,add_message,token,token,token,add_message,end" {
		t.Fatalf("events = %s", got)
	}
}

func TestFaultTimesAndCounters(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{})
	rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Status: 500, Detail: "boom", Times: 2})
	codes := []int{}
	for i := 0; i < 3; i++ {
		r := post(t, srv.URL+"/api/v1/run/f", "", `{"input_value": "x", "session_id": "s`+string(rune('0'+i))+`"}`)
		_, _ = io.Copy(io.Discard, r.Body)
		codes = append(codes, r.StatusCode)
	}
	if codes[0] != 500 || codes[1] != 500 || codes[2] != 200 {
		t.Fatalf("codes = %v", codes)
	}
	if rt.Calls() != 3 || !strings.Contains(string(rt.LastRunBody()), `"s2"`) {
		t.Fatalf("calls = %d last = %s", rt.Calls(), rt.LastRunBody())
	}
	// Faults and counters are safe to use while requests are in flight.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := post(t, srv.URL+"/api/v1/run/f", "", `{"input_value": "x", "session_id": "s"}`)
			_, _ = io.Copy(io.Discard, r.Body)
		}()
		go func() {
			defer wg.Done()
			rt.SetFault(echoruntime.Fault{Status: 503})
			rt.ClearFault()
			_ = rt.Calls()
		}()
	}
	wg.Wait()
	if rt.Calls() != 23 {
		t.Fatalf("calls = %d", rt.Calls())
	}
}

func TestFlowsCreateDelete(t *testing.T) {
	rt, srv := echotest.Start(t, echoruntime.Options{StrictFlows: true})
	export := `{"id": "524f71dc-cc58-441a-a009-c71d6755765f", "name": "Basic Prompting", "endpoint_name": "basic", "data": {"nodes": [], "edges": []}}`
	var ids []string
	for _, wantName := range []string{"Basic Prompting", "Basic Prompting (1)", "Basic Prompting (2)"} {
		r := post(t, srv.URL+"/api/v1/flows/", "", export)
		var f map[string]any
		_ = json.NewDecoder(r.Body).Decode(&f)
		if r.StatusCode != http.StatusCreated || f["name"] != wantName || f["id"] == "524f71dc-cc58-441a-a009-c71d6755765f" {
			t.Fatalf("create: %d %v", r.StatusCode, f)
		}
		ids = append(ids, f["id"].(string))
	}
	// Runs resolve endpoint names too.
	if r := post(t, srv.URL+"/api/v1/run/basic-1", "", `{"input_value": "x"}`); r.StatusCode != http.StatusOK {
		t.Fatalf("run by endpoint name: %d", r.StatusCode)
	}
	del := func(id string) int {
		req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/v1/flows/"+id, nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if del(ids[0]) != http.StatusOK || del(ids[0]) != http.StatusNotFound {
		t.Fatal("delete semantics")
	}
	if len(rt.FlowIDs()) != 2 {
		t.Fatalf("flows = %v", rt.FlowIDs())
	}
}
