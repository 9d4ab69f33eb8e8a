package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The portal's CORS policy is the one list of browser pages that may call /graphql, over
// HTTP and over websockets (graph.Options.OriginAllowed). Without CORS_ALLOWED_ORIGINS a
// production service admits no other origin: rs/cors would read the empty list as every
// origin.
func TestPortalCORSAdmitsOnlyListedOrigins(t *testing.T) {
	listed := Config{CORSAllowedOrigins: []string{"https://portal.example.com", "https://*.example.org"}}
	cases := []struct {
		name   string
		cfg    Config
		origin string
		want   bool
	}{
		{"production default admits none", Config{}, "https://portal.example.com", false},
		{"a listed origin", listed, "https://portal.example.com", true},
		{"a listed host over another scheme", listed, "http://portal.example.com", false},
		{"a wildcard's subdomain", listed, "https://app.example.org", true},
		{"another domain", listed, "https://portal.example.net", false},
		{"dev default: loopback on any port", Config{Dev: true}, "http://127.0.0.1:5173", true},
		{"dev default: not another host", Config{Dev: true}, "http://evil.test", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := (&Server{cfg: tc.cfg}).portalCORS()
			r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
			r.Header.Set("Origin", tc.origin)
			if got := c.OriginAllowed(r); got != tc.want {
				t.Errorf("OriginAllowed(%s) = %v, want %v", tc.origin, got, tc.want)
			}
			w := httptest.NewRecorder()
			c.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			if got := w.Header().Get("Access-Control-Allow-Origin") == tc.origin; got != tc.want {
				t.Errorf("Access-Control-Allow-Origin %q for %s, want allowed=%v", w.Header().Get("Access-Control-Allow-Origin"), tc.origin, tc.want)
			}
		})
	}
}
