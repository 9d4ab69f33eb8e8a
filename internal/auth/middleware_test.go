package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
)

// seen records what the wrapped handler found in its context.
type seen struct {
	called  bool
	viewer  *auth.Viewer
	authErr error
}

func recordingHandler(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.called = true
		s.viewer = auth.FromContext(r.Context())
		s.authErr = auth.AuthError(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
}

func TestMiddleware(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	good := iss.RoleToken(t, auth.RoleProvider, "user-1")
	idToken := iss.Token(t, authtest.NewClaims().Set("typ", "ID").Map())

	cases := []struct {
		name       string
		header     string // "" = no Authorization header
		wantViewer bool
		wantErr    error
	}{
		{"no header: anonymous", "", false, nil},
		{"valid bearer", "Bearer " + good, true, nil},
		{"scheme is case-insensitive", "bEaReR " + good, true, nil},
		{"invalid token", "Bearer " + idToken, false, auth.ErrUnauthenticated},
		{"garbage token", "Bearer garbage", false, auth.ErrUnauthenticated},
		{"empty bearer", "Bearer ", false, auth.ErrUnauthenticated},
		{"other scheme", "Basic dXNlcjpwYXNz", false, auth.ErrUnauthenticated},
		{"bare token without scheme", good, false, auth.ErrUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s seen
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			a.Middleware(recordingHandler(&s)).ServeHTTP(w, r)
			if !s.called || w.Code != http.StatusNoContent {
				t.Fatalf("middleware did not pass the request on (code %d)", w.Code)
			}
			if (s.viewer != nil) != tc.wantViewer {
				t.Fatalf("viewer = %+v, want present=%v", s.viewer, tc.wantViewer)
			}
			if tc.wantViewer && (s.viewer.Subject != "user-1" || !s.viewer.HasRole(auth.RoleProvider)) {
				t.Fatalf("viewer = %+v", s.viewer)
			}
			if !errors.Is(s.authErr, tc.wantErr) || (tc.wantErr == nil) != (s.authErr == nil) {
				t.Fatalf("AuthError = %v, want %v", s.authErr, tc.wantErr)
			}
		})
	}
}

func TestRequireViewer(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	down := authtest.NewUnstartedIssuer(t) // never started: discovery fails
	aDown := down.Authenticator(nil)

	cases := []struct {
		name      string
		a         *auth.Authenticator
		header    string
		wantCode  int
		wantError string // JSON error.code; "" = handler reached
		wantWWW   string
	}{
		{"viewer reaches the handler", a, "Bearer " + iss.RoleToken(t, "", "user-1"), http.StatusNoContent, "", ""},
		{"anonymous gets 401", a, "", http.StatusUnauthorized, "UNAUTHENTICATED", "Bearer"},
		{"invalid token gets 401", a, "Bearer garbage", http.StatusUnauthorized, "UNAUTHENTICATED", `Bearer error="invalid_token"`},
		{"issuer down gets 503", aDown, "Bearer " + down.RoleToken(t, "", "user-1"), http.StatusServiceUnavailable, "UNAVAILABLE", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s seen
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			tc.a.Middleware(auth.RequireViewer(recordingHandler(&s))).ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantCode)
			}
			if tc.wantError == "" {
				if !s.called || s.viewer == nil {
					t.Fatal("handler not reached with a viewer")
				}
				return
			}
			if s.called {
				t.Fatal("handler reached without a viewer")
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantWWW {
				t.Fatalf("WWW-Authenticate = %q, want %q", got, tc.wantWWW)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type = %q", ct)
			}
			var body struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body.String(), err)
			}
			if body.Error.Code != tc.wantError || body.Error.Message == "" {
				t.Fatalf("body = %s", w.Body.String())
			}
		})
	}
}

func TestFromInitPayload(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	good := iss.RoleToken(t, auth.RoleCustomer, "user-1")

	cases := []struct {
		name       string
		payload    map[string]any
		wantViewer bool
		wantErr    error
	}{
		{"nil payload: anonymous", nil, false, nil},
		{"no token: anonymous", map[string]any{"other": "x"}, false, nil},
		{"Authorization Bearer", map[string]any{"Authorization": "Bearer " + good}, true, nil},
		{"authorization bare", map[string]any{"authorization": good}, true, nil},
		{"token", map[string]any{"token": good}, true, nil},
		{"empty Authorization falls through to token", map[string]any{"Authorization": "", "token": good}, true, nil},
		{"invalid token", map[string]any{"token": "garbage"}, false, auth.ErrUnauthenticated},
		{"other scheme", map[string]any{"Authorization": "Basic dXNlcjpwYXNz"}, false, auth.ErrUnauthenticated},
		{"not a string", map[string]any{"Authorization": 42}, false, auth.ErrUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := a.FromInitPayload(context.Background(), tc.payload)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if ctx == nil {
				t.Fatal("nil context")
			}
			v := auth.FromContext(ctx)
			if (v != nil) != tc.wantViewer {
				t.Fatalf("viewer = %+v, want present=%v", v, tc.wantViewer)
			}
			if tc.wantViewer && !v.HasRole(auth.RoleCustomer) {
				t.Fatalf("viewer = %+v", v)
			}
			if got := auth.AuthError(ctx); !errors.Is(got, tc.wantErr) || (tc.wantErr == nil) != (got == nil) {
				t.Fatalf("AuthError = %v, want %v", got, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "garbage") {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
}
