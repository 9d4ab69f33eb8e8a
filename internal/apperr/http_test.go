package apperr_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

func TestWriteHTTPShape(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Length", "999")
	apperr.WriteHTTP(rec, http.StatusForbidden, apperr.Forbidden, `no "access"`)
	var body apperr.HTTPBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 403 || body.Error.Code != "FORBIDDEN" || body.Error.Message != `no "access"` ||
		rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Content-Length") != "" ||
		rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("got %d %s %v", rec.Code, rec.Body, rec.Header())
	}
}
