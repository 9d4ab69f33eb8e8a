package widget_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/widget"
)

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, hdr)
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// The transport must not negotiate gzip on its own: the tests choose.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var versionedRE = regexp.MustCompile(`/widget/v/([0-9a-f]{16})/(widget\.js|widget\.css)`)

// The loader is cached briefly and revalidated by ETag; it names the versioned bundle,
// which is immutable; gzip is served when accepted, identity otherwise.
func TestAssetsCaching(t *testing.T) {
	e := newEnv(t)
	resp, loader := get(t, e.svc.URL+"/widget/loader.js", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=300" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("loader: %d %v", resp.StatusCode, resp.Header)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("loader headers: %v", resp.Header)
	}
	resp, _ = get(t, e.svc.URL+"/widget/loader.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp, _ = get(t, e.svc.URL+"/widget/loader.js", map[string]string{"If-None-Match": `"stale"`})
	if resp.StatusCode != 200 {
		t.Fatalf("stale If-None-Match: %d", resp.StatusCode)
	}
	resp, gz := get(t, e.svc.URL+"/widget/loader.js", map[string]string{"Accept-Encoding": "gzip, br"})
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, gz), loader) || resp.Header.Get("ETag") == etag {
		t.Fatalf("gzip loader: %v", resp.Header)
	}
	resp, _ = get(t, e.svc.URL+"/widget/loader.js", map[string]string{"Accept-Encoding": "gzip;q=0, identity"})
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip served despite q=0")
	}
	// A gzip ETag revalidates too (the client may have either representation).
	resp, _ = get(t, e.svc.URL+"/widget/loader.js", map[string]string{"If-None-Match": `W/` + etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("weak If-None-Match: %d", resp.StatusCode)
	}

	found := versionedRE.FindAllStringSubmatch(string(loader), -1)
	if len(found) != 2 {
		t.Fatalf("loader names %d versioned URLs: %s", len(found), loader)
	}
	for _, m := range found {
		resp, body := get(t, e.svc.URL+m[0], map[string]string{"Accept-Encoding": "gzip"})
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: %d %v", m[0], resp.StatusCode, resp.Header)
		}
		_, plain := get(t, e.svc.URL+"/widget/"+m[2], nil)
		if !bytes.Equal(gunzip(t, body), plain) {
			t.Fatalf("%s differs from /widget/%s", m[0], m[2])
		}
		// An old version (a page holding a loader from before a deploy) is sent on to
		// the current bundle.
		resp, _ = get(t, e.svc.URL+"/widget/v/0123456789abcdef/"+m[2], nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != m[0] {
			t.Fatalf("old version: %d %v", resp.StatusCode, resp.Header)
		}
	}
	resp, _ = get(t, e.svc.URL+"/widget/v/"+found[0][1]+"/other.js", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown file: %d", resp.StatusCode)
	}
	resp, body := do(t, http.MethodHead, e.svc.URL+"/widget/loader.js", nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// Budgets: the loader is on every page of a customer's site, the widget on every page
// with the chat.
func TestAssetBudgets(t *testing.T) {
	e := newEnv(t)
	budgets := map[string]int{"/widget/loader.js": 3 << 10, "/widget/widget.js": 30 << 10, "/widget/widget.css": 10 << 10}
	for path, budget := range budgets {
		resp, gz := get(t, e.svc.URL+path, map[string]string{"Accept-Encoding": "gzip"})
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s not gzipped", path)
		}
		_, plain := get(t, e.svc.URL+path, nil)
		t.Logf("%s: %d bytes, %d gzipped (budget %d)", path, len(plain), len(gz), budget)
		if len(gz) >= budget {
			t.Errorf("%s is %d bytes gzipped, over its budget of %d", path, len(gz), budget)
		}
	}
}

type configBody struct {
	ConfigID     string `json:"config_id"`
	Name         string `json:"name"`
	Title        string `json:"title"`
	Greeting     string `json:"greeting"`
	AvatarURL    string `json:"avatar_url"`
	Theme        string `json:"theme"`
	Position     string `json:"position"`
	PrimaryColor string `json:"primary_color"`
	Error        *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestConfigEndpoint(t *testing.T) {
	e := newEnv(t)
	const site = "https://shop.example.com"
	e.allowOrigins(site, "https://*.example.org")
	url := e.svc.URL + "/api/widget/config/" + string(e.configID)
	call := func(hdr map[string]string) (*http.Response, configBody, string) {
		t.Helper()
		resp, b := get(t, url, hdr)
		var out configBody
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
		}
		return resp, out, string(b)
	}

	resp, out, raw := call(map[string]string{"X-API-Key": e.pubKey, "Origin": site})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != site {
		t.Fatalf("allowed origin: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	if out.ConfigID != string(e.configID) || out.Name != "Echo" || out.Title != "Demo chat" ||
		out.Greeting != "Hi! Say something and I will say it back." || out.Theme != "light" || out.Position != "bottom-right" {
		t.Fatalf("config: %s", raw)
	}
	// Nothing secret, whatever the config holds.
	for _, secret := range []string{"system_prompt", "friendly demo assistant", "tweaks", "allowed_origins", "shop.example.com"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("config leaks %q: %s", secret, raw)
		}
	}
	// Bearer works too, and a wildcard origin matches a subdomain.
	resp, _, raw = call(map[string]string{"Authorization": "Bearer " + e.pubKey, "Origin": "https://a.example.org"})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://a.example.org" {
		t.Fatalf("bearer + wildcard: %d %s", resp.StatusCode, raw)
	}
	// The service's own pages (same-origin GETs carry no Origin).
	resp, _, raw = call(map[string]string{"X-API-Key": e.pubKey, "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same-origin: %d %s", resp.StatusCode, raw)
	}

	refusals := []struct {
		name   string
		hdr    map[string]string
		url    string
		status int
		code   string
	}{
		{"no key", map[string]string{"Origin": site}, url, 401, "UNAUTHENTICATED"},
		{"forged key", map[string]string{"X-API-Key": e.pubKey + "x", "Origin": site}, url, 401, "UNAUTHENTICATED"},
		{"two keys", map[string]string{"X-API-Key": e.pubKey, "Authorization": "Bearer " + e.secretKey, "Origin": site}, url, 401, "UNAUTHENTICATED"},
		{"secret key", map[string]string{"X-API-Key": e.secretKey, "Origin": site}, url, 403, "FORBIDDEN"},
		{"foreign origin", map[string]string{"X-API-Key": e.pubKey, "Origin": "https://evil.example.net"}, url, 403, "FORBIDDEN"},
		{"bare wildcard domain", map[string]string{"X-API-Key": e.pubKey, "Origin": "https://example.org"}, url, 403, "FORBIDDEN"},
		{"no origin", map[string]string{"X-API-Key": e.pubKey}, url, 403, "FORBIDDEN"},
		{"other config", map[string]string{"X-API-Key": e.pubKey, "Origin": site}, e.svc.URL + "/api/widget/config/cfg_01ARZ3NDEKTSV4RRFFQ69G5FAV", 403, "FORBIDDEN"},
	}
	for _, c := range refusals {
		resp, b := get(t, c.url, c.hdr)
		var out configBody
		_ = json.Unmarshal(b, &out)
		if resp.StatusCode != c.status || out.Error == nil || out.Error.Code != c.code || out.Name != "" {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, b)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: a refusal carries Access-Control-Allow-Origin", c.name)
		}
	}

	// Portal settings flow through, unsafe values do not.
	ctx := systemCtx()
	if err := e.db.Client.AgentConfig.UpdateOneID(e.configID).SetWidgetTheme("dark").SetWidgetPosition("bottom-left").
		SetWidgetPrimaryColor("#ff0000;}body{display:none").SetAvatarURL("javascript:alert(1)").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	e.allowOrigins(site)
	_, out, raw = call(map[string]string{"X-API-Key": e.pubKey, "Origin": site})
	if out.Theme != "dark" || out.Position != "bottom-left" || out.PrimaryColor != "" || out.AvatarURL != "" {
		t.Fatalf("settings: %s", raw)
	}
	if err := e.db.Client.AgentConfig.UpdateOneID(e.configID).SetWidgetPrimaryColor("#0a7").
		SetAvatarURL("https://cdn.example.com/a.png").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	e.allowOrigins(site)
	_, out, raw = call(map[string]string{"X-API-Key": e.pubKey, "Origin": site})
	if out.PrimaryColor != "#0a7" || out.AvatarURL != "https://cdn.example.com/a.png" {
		t.Fatalf("settings: %s", raw)
	}
}

// The preflight admits exactly the config's origins.
func TestConfigPreflight(t *testing.T) {
	e := newEnv(t)
	e.allowOrigins("https://shop.example.com")
	url := e.svc.URL + "/api/widget/config/" + string(e.configID)
	pre := func(origin, path string) *http.Response {
		resp, _ := do(t, http.MethodOptions, path, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key",
		})
		return resp
	}
	resp := pre("https://shop.example.com", url)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "X-API-Key") {
		t.Fatalf("allowed: %d %v", resp.StatusCode, resp.Header)
	}
	for _, c := range []struct{ origin, url string }{
		{"https://evil.example.net", url},
		{"null", url},
		{"https://shop.example.com", e.svc.URL + "/api/widget/config/not-an-id"},
		{"https://shop.example.com", e.svc.URL + "/api/widget/config/cfg_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
	} {
		if resp := pre(c.origin, c.url); resp.StatusCode < 400 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s: %d %v", c.origin, c.url, resp.StatusCode, resp.Header)
		}
	}
}

// The widget's origin rule must be the gateway's, or a page could read its config and be
// refused every answer (or the reverse). The gateway's Langflow-compatible preflight
// applies its rule to the config in the path, as the widget's preflight does: for each
// list of allowed origins and each candidate, both must agree.
func TestOriginMatchesGateway(t *testing.T) {
	e := newEnv(t)
	lists := [][]string{
		{"https://shop.example.com"},
		{"https://*.example.com", "http://localhost:8080/"},
		{"HTTPS://Shop.Example.com:8443", "https://*.*.example.com", "null"},
	}
	candidates := []string{
		"https://shop.example.com", "https://SHOP.example.com", "http://shop.example.com", "https://shop.example.com:8443",
		"https://a.example.com", "https://a.b.example.com", "https://example.com", "http://localhost:8080",
		"http://localhost:8081", "null", "https://shop.example.com/", "https://evilexample.com", "file://x",
	}
	pre := func(path, origin string) bool {
		resp, _ := do(t, http.MethodOptions, e.svc.URL+path, map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"})
		return resp.StatusCode == http.StatusNoContent && resp.Header.Get("Access-Control-Allow-Origin") == origin
	}
	for _, list := range lists {
		e.allowOrigins(list...)
		for _, c := range candidates {
			gw := pre("/api/v1/run/"+string(e.configID), c)
			wd := pre("/api/widget/config/"+string(e.configID), c)
			if gw != wd {
				t.Errorf("allowed %v, origin %q: gateway %v, widget %v", list, c, gw, wd)
			}
		}
	}
}

func TestDemoPage(t *testing.T) {
	e := newEnv(t)
	resp, b := get(t, e.svc.URL+"/widget/demo", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), string(e.configID)) || !strings.Contains(string(b), e.pubKey) ||
		!strings.Contains(string(b), `src="/widget/loader.js"`) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("demo: %d %s", resp.StatusCode, b)
	}
	// Outside dev mode there is no demo route.
	w, err := widget.New(widget.Options{Verifier: fakeVerifier{}, Resolver: fakeResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range w.Endpoints() {
		if strings.Contains(ep.Pattern, "demo") {
			t.Fatalf("demo route outside dev mode: %s", ep.Pattern)
		}
	}
	if _, err := widget.New(widget.Options{}); err == nil {
		t.Fatal("New without Verifier and Resolver")
	}
}

// The widget sends the page's user option; the gateway accepts it from an allowed page.
func TestGatewayAcceptsTheWidgetsUser(t *testing.T) {
	e := newEnv(t)
	const site = "https://shop.example.com"
	e.allowOrigins(site)
	req, err := http.NewRequest(http.MethodPost, e.svc.URL+"/api/agent-gateway/invoke/",
		strings.NewReader(`{"input":"hi","session_id":"wabc","user":{"id":"u1","name":"Ann"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.pubKey)
	req.Header.Set("Origin", site)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the gateway answers %d %s to the widget's user field", resp.StatusCode, b)
	}
}
