package langflow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// streamEvent is one Langflow stream event: {"event": ..., "data": {...}}.
type streamEvent struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// Stream runs a flow with POST {base}/api/v1/run/{flowID}?stream=true and
// calls onToken with each chunk of the answer as Langflow produces it.
//
// When the flow emits no token events (its model does not stream), onToken
// is called once with the whole answer before Stream returns, so callers
// always see the text through onToken. An error from onToken stops the
// stream and is returned unchanged (it does not count against the breaker).
//
// The stream must finish with an "end" event carrying the full result; a
// stream that closes before it fails with ErrStreamIncomplete, and an
// "error" event fails with ErrUpstream.
func (c *Client) Stream(ctx context.Context, flowID string, req RunRequest, onToken func(chunk string) error) (RunResult, error) {
	const op = "stream"
	body, err := c.encodeRun(op, flowID, req)
	if err != nil {
		return RunResult{}, err
	}
	if onToken == nil {
		onToken = func(string) error { return nil }
	}
	ctx, cancel := context.WithTimeout(ctx, c.streamTTL)
	defer cancel()
	var res RunResult
	err = c.guard(ctx, op, func() error {
		resp, err := c.do(ctx, op, http.MethodPost, runPath(flowID), "stream=true", body, "text/event-stream", true)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt == "application/json" {
			// Something between us and Langflow (or an old Langflow)
			// ignored stream=true: the body is a plain run response.
			err := c.readBody(op, resp.Body, func(raw []byte) (err error) {
				res, err = parseRunResult(op, raw, req.InputValue)
				return err
			})
			if err != nil {
				return err
			}
			return deliverWhole(onToken, res.Text)
		}
		res, err = c.readStream(ctx, op, resp.Body, req.InputValue, onToken)
		return err
	})
	if err != nil {
		return RunResult{}, err
	}
	return res, nil
}

func deliverWhole(onToken func(string) error, text string) error {
	if text == "" {
		return nil
	}
	if err := onToken(text); err != nil {
		return callbackError{err}
	}
	return nil
}

// readStream consumes the event stream. Events are JSON documents separated
// by blank lines; SSE "data:" prefixes, "event:"/"id:"/"retry:" fields and
// ":" comments are tolerated so a proxy that re-frames the stream still
// works.
func (c *Client) readStream(ctx context.Context, op string, body io.Reader, input string, onToken func(string) error) (RunResult, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), c.maxEvent)

	var (
		event      bytes.Buffer
		tokens     strings.Builder
		sentTokens bool
		lastMsg    map[string]any // the last bot message from add_message
	)
	handle := func(raw []byte) (done bool, err error) {
		var ev streamEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return false, &Error{Kind: ErrUpstream, Op: op, Detail: "langflow sent a stream event that is not JSON"}
		}
		switch ev.Event {
		case "token":
			var d struct {
				Chunk string `json:"chunk"`
			}
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return false, &Error{Kind: ErrUpstream, Op: op, Detail: "langflow sent a malformed token event"}
			}
			if d.Chunk == "" {
				return false, nil
			}
			tokens.WriteString(d.Chunk)
			sentTokens = true
			if err := onToken(d.Chunk); err != nil {
				return false, callbackError{err}
			}
		case "add_message":
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(ev.Data))
			dec.UseNumber()
			if dec.Decode(&m) == nil && isBotMessage(m) {
				lastMsg = m
			}
		case "error":
			return false, &Error{Kind: ErrUpstream, Op: op, Detail: parseDetail(http.StatusBadGateway, "application/json", ev.Data, c.redact)}
		case "end":
			return true, nil
		}
		return false, nil
	}

	var endData json.RawMessage
	dispatch := func() (bool, error) {
		if event.Len() == 0 {
			return false, nil
		}
		raw := bytes.Clone(event.Bytes())
		event.Reset()
		done, err := handle(raw)
		if done {
			var ev streamEvent
			_ = json.Unmarshal(raw, &ev)
			endData = ev.Data
		}
		return done, err
	}

	ended := false
	for !ended && sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			var err error
			if ended, err = dispatch(); err != nil {
				return RunResult{}, err
			}
			continue
		case line[0] == ':':
			continue
		case bytes.HasPrefix(line, []byte("data:")):
			line = bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
		case bytes.HasPrefix(line, []byte("event:")), bytes.HasPrefix(line, []byte("id:")), bytes.HasPrefix(line, []byte("retry:")):
			continue
		}
		if event.Len()+len(line) > c.maxEvent {
			return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: fmt.Sprintf("langflow stream event exceeds %d bytes", c.maxEvent)}
		}
		if event.Len() > 0 {
			event.WriteByte('\n')
		}
		event.Write(line)
	}
	if !ended {
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return RunResult{}, &Error{Kind: ErrUpstream, Op: op, Detail: fmt.Sprintf("langflow stream line exceeds %d bytes", c.maxEvent)}
			}
			if ctx.Err() != nil {
				return RunResult{}, err // classified as timeout or cancellation
			}
			return RunResult{}, &Error{Kind: ErrStreamIncomplete, Op: op, Detail: "connection lost: " + sanitize(err.Error(), c.redact), cause: err}
		}
		// A last event without its trailing blank line still counts.
		var err error
		if ended, err = dispatch(); err != nil {
			return RunResult{}, err
		}
	}
	if !ended {
		if ctx.Err() != nil {
			return RunResult{}, ctx.Err()
		}
		return RunResult{}, &Error{Kind: ErrStreamIncomplete, Op: op, Detail: "langflow closed the stream before the end event"}
	}

	res, err := c.endResult(op, endData, input, tokens.String(), lastMsg)
	if err != nil {
		return RunResult{}, err
	}
	if !sentTokens {
		if err := deliverWhole(onToken, res.Text); err != nil {
			return RunResult{}, err
		}
	}
	return res, nil
}

// endResult builds the result from the end event's data.result, falling
// back on the streamed tokens and the last bot message for text and usage.
func (c *Client) endResult(op string, endData json.RawMessage, input, streamed string, lastMsg map[string]any) (RunResult, error) {
	var d struct {
		Result json.RawMessage `json:"result"`
	}
	_ = json.Unmarshal(endData, &d)
	if len(d.Result) > 0 && !bytes.Equal(d.Result, []byte("null")) {
		res, err := parseRunResult(op, d.Result, input)
		if err == nil {
			if !res.TokensReported {
				if in, out, ok := usageOf(path(lastMsg, "properties", "usage")); ok {
					res.InputTokens, res.OutputTokens, res.TokensReported = in, out, true
				}
			}
			return res, nil
		}
		var le *Error
		if errors.As(err, &le) && le.Detail != noTextDetail {
			return RunResult{}, err
		}
	}
	// The end event had no usable result: use what was streamed.
	res := RunResult{Text: streamed}
	if res.Text == "" {
		res.Text, _ = lastMsg["text"].(string)
	}
	res.SessionID, _ = lastMsg["session_id"].(string)
	in, out, ok := usageOf(path(lastMsg, "properties", "usage"))
	res.applyUsage(in, out, ok, input)
	return res, nil
}

// isBotMessage tells the flow's answer from the echoed user message.
func isBotMessage(m map[string]any) bool {
	sender, _ := m["sender"].(string)
	return sender != "User"
}
