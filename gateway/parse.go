package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// errNoKey and errTwoKeys are logged reasons of a 401.
var (
	errNoKey   = errors.New("no API key in Authorization or X-API-Key")
	errTwoKeys = errors.New("Authorization and X-API-Key carry different keys")
	errScheme  = errors.New("Authorization is not a Bearer credential")
)

// extractKey takes the key from "Authorization: Bearer <key>" or "X-API-Key: <key>" (what
// Langflow clients send). Both may be present only if they agree: two different keys make
// it ambiguous which tenant is calling.
func extractKey(r *http.Request) (string, error) {
	var bearer string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", errScheme
		}
		bearer = strings.TrimSpace(token)
	}
	header := strings.TrimSpace(r.Header.Get("X-API-Key"))
	switch {
	case bearer != "" && header != "" && bearer != header:
		return "", errTwoKeys
	case bearer != "":
		return bearer, nil
	case header != "":
		return header, nil
	}
	return "", errNoKey
}

// invokeRequest is the body of the gateway's own route.
type invokeRequest struct {
	Input     *string         `json:"input"`
	SessionID string          `json:"session_id"`
	Tweaks    json.RawMessage `json:"tweaks"`
	Stream    bool            `json:"stream"`
	User      *Visitor        `json:"user"`
}

// Visitor is who the calling page says its visitor is (the widget's `user` option). It
// is forwarded to the flow and nothing else: with a publishable key it is asserted by a
// web page, not verified, so it never affects limits, quotas or billing.
type Visitor struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// validVisitor bounds what a page may send about its visitor.
func validVisitor(v *Visitor) bool {
	if v == nil {
		return true
	}
	if (v.ID != "" && !validToken(v.ID, 128)) || utf8.RuneCountInString(v.Name) > 100 || !utf8.ValidString(v.Name) {
		return false
	}
	return !strings.ContainsFunc(v.Name, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// compatRequest is Langflow's run body. Langflow ignores fields it does not know, and its
// clients (the embedded chat) may send some, so unknown fields are ignored here too.
type compatRequest struct {
	InputValue      *string         `json:"input_value"`
	InputType       string          `json:"input_type"`
	OutputType      string          `json:"output_type"`
	OutputComponent string          `json:"output_component"`
	Tweaks          json.RawMessage `json:"tweaks"`
	SessionID       *string         `json:"session_id"`
}

// callInput is a validated request, whatever route it came from.
type callInput struct {
	input   string
	session string // the caller's session id; "" means make one
	tweaks  map[string]any
	stream  bool
	user    *Visitor // the page's visitor, forwarded as tweaks (see VisitorTweaks)
}

// readBody reads at most limit bytes; a larger body is a 400, never a truncated parse.
// Content-Type is not checked: the body must be our JSON whatever it claims to be, and
// curl -d (form-encoded by default) is how many customers try the API first.
func readBody(r *http.Request, limit int64) ([]byte, *apiError) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest("request body too large")
		}
		return nil, badRequest("could not read the request body")
	}
	if int64(len(raw)) > limit {
		return nil, badRequest("request body too large")
	}
	return raw, nil
}

// decodeStrict decodes exactly one JSON value into v.
func decodeStrict(raw []byte, v any, disallowUnknown bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if disallowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// jsonProblem turns a decode error into a message that names the field but does not echo
// the caller's data.
func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ute) && ute.Field != "":
		return fmt.Sprintf("field %q has the wrong type", ute.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.EOF):
		return "request body is empty"
	}
	return "request body is not a valid JSON object"
}

// parseInvoke decodes and validates the gateway's own body.
func parseInvoke(raw []byte, maxInput int) (callInput, *apiError) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
		return callInput{}, badRequest("request body must be a JSON object")
	}
	var req invokeRequest
	if err := decodeStrict(raw, &req, true); err != nil {
		return callInput{}, badRequest(jsonProblem(err))
	}
	if req.Input == nil {
		return callInput{}, badRequest(`"input" is required`)
	}
	in := callInput{input: *req.Input, session: req.SessionID, stream: req.Stream, user: req.User}
	if !validVisitor(req.User) {
		return callInput{}, badRequest(`"user" must be {"id": up to 128 of [A-Za-z0-9._:@-], "name": up to 100 printable characters}`)
	}
	if err := in.validate(maxInput); err != nil {
		return callInput{}, err
	}
	tw, err := parseTweaks(req.Tweaks)
	if err != nil {
		return callInput{}, err
	}
	in.tweaks = tw
	return in, nil
}

// parseCompat decodes and validates Langflow's body. input_type, output_type and
// output_component are checked for sanity but not forwarded: the gateway always runs the
// flow as chat in, chat out, because "debug" outputs and a chosen output component could
// show a caller the flow's internals (a provider's prompts).
func parseCompat(raw []byte, maxInput int) (callInput, *apiError) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
		return callInput{}, badRequest("request body must be a JSON object")
	}
	var req compatRequest
	if err := decodeStrict(raw, &req, false); err != nil {
		return callInput{}, badRequest(jsonProblem(err))
	}
	if req.InputValue == nil {
		return callInput{}, badRequest("input_value is required")
	}
	switch req.InputType {
	case "", "chat", "text", "any":
	default:
		return callInput{}, badRequest("input_type must be chat, text or any")
	}
	switch req.OutputType {
	case "", "chat", "text", "any", "debug":
	default:
		return callInput{}, badRequest("output_type must be chat, text, any or debug")
	}
	in := callInput{input: *req.InputValue}
	if req.SessionID != nil {
		in.session = *req.SessionID
	}
	if err := in.validate(maxInput); err != nil {
		return callInput{}, err
	}
	tw, err := parseTweaks(req.Tweaks)
	if err != nil {
		return callInput{}, err
	}
	in.tweaks = tw
	return in, nil
}

func (in *callInput) validate(maxInput int) *apiError {
	switch {
	case strings.TrimSpace(in.input) == "":
		return badRequest("input must not be empty")
	case len(in.input) > maxInput:
		return badRequest(fmt.Sprintf("input exceeds %d bytes", maxInput))
	case !utf8.ValidString(in.input):
		return badRequest("input is not valid UTF-8")
	case in.session != "" && !validToken(in.session, 128):
		return badRequest("session_id must be 1-128 characters of [A-Za-z0-9._:@-]")
	}
	return nil
}

// parseTweaks accepts an absent or null tweaks field, or an object.
func parseTweaks(raw json.RawMessage) (map[string]any, *apiError) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, nil
	}
	if trimmed[0] != '{' {
		return nil, badRequest("tweaks must be an object")
	}
	var m map[string]any
	if err := json.Unmarshal(trimmed, &m); err != nil {
		return nil, badRequest("tweaks must be an object")
	}
	return m, nil
}

// validToken reports whether s is 1..max characters of [A-Za-z0-9._:@-]: safe to log,
// to echo, and to embed in the Langflow session id.
func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// validIdempotencyKey is 1-128 characters of [A-Za-z0-9._:-].
func validIdempotencyKey(s string) bool {
	return validToken(s, 128) && !strings.Contains(s, "@")
}

// idempotentRequestID derives the request id of a call from its key and Idempotency-Key,
// so a retried call lands on the same usage record (which the recorder stores once).
// The key's row id is part of it: two tenants using the same idempotency key never
// collide. The agent is run again on a replay; responses are not cached.
func idempotentRequestID(keyID pulid.ID, idem string) string {
	sum := sha256.Sum256([]byte(string(keyID) + "\x00" + idem))
	return "idem_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20]))
}

// wantsStream reports whether the Accept header asks for an event stream.
func wantsStream(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
			return true
		}
	}
	return false
}
