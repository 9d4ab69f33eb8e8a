package widget

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

//go:embed assets/loader.js assets/widget.js assets/widget.css
var assetFS embed.FS

// Cache policies. The loader's URL is the one customers paste into their pages, so it can
// only be cached briefly: a deploy reaches every site within five minutes. Versioned URLs
// name their content, so they never change and can be cached for a year.
const (
	cacheShort     = "public, max-age=300"
	cacheImmutable = "public, max-age=31536000, immutable"
)

// Placeholders in loader.js, replaced at construction by the bundle's versioned paths.
const (
	placeholderJS  = "__GSV_WIDGET_JS__"
	placeholderCSS = "__GSV_WIDGET_CSS__"
)

// asset is one file, prepared once: its bytes, their gzip, and the ETags of both.
type asset struct {
	name        string // widget.js
	contentType string
	body, gz    []byte
	version     string // content hash, the {version} of its immutable URL
	etag        string
	etagGz      string
}

func newAsset(name, contentType string, body []byte) (*asset, error) {
	sum := sha256.Sum256(body)
	version := hex.EncodeToString(sum[:])[:16]
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &asset{
		name: name, contentType: contentType, body: body, gz: buf.Bytes(), version: version,
		// Two representations, two strong ETags: a cache must not hand gzip bytes to a
		// client that revalidated the identity ones.
		etag: `"` + version + `"`, etagGz: `"` + version + `-gz"`,
	}, nil
}

// versionedPath is the immutable URL of the asset.
func (a *asset) versionedPath() string { return "/widget/v/" + a.version + "/" + a.name }

type assets struct {
	loader, js, css *asset
}

func loadAssets() (*assets, error) {
	read := func(name string) ([]byte, error) {
		b, err := assetFS.ReadFile("assets/" + name)
		if err != nil {
			return nil, fmt.Errorf("widget: embedded %s: %w", name, err)
		}
		return b, nil
	}
	jsSrc, err := read("widget.js")
	if err != nil {
		return nil, err
	}
	cssSrc, err := read("widget.css")
	if err != nil {
		return nil, err
	}
	loaderSrc, err := read("loader.js")
	if err != nil {
		return nil, err
	}
	a := &assets{}
	if a.js, err = newAsset("widget.js", "text/javascript; charset=utf-8", jsSrc); err != nil {
		return nil, err
	}
	if a.css, err = newAsset("widget.css", "text/css; charset=utf-8", cssSrc); err != nil {
		return nil, err
	}
	if !bytes.Contains(loaderSrc, []byte(placeholderJS)) || !bytes.Contains(loaderSrc, []byte(placeholderCSS)) {
		return nil, fmt.Errorf("widget: loader.js lacks its bundle placeholders")
	}
	// The loader names the current bundle, so its own hash (and ETag) changes with it.
	loaderSrc = bytes.ReplaceAll(loaderSrc, []byte(placeholderJS), []byte(a.js.versionedPath()))
	loaderSrc = bytes.ReplaceAll(loaderSrc, []byte(placeholderCSS), []byte(a.css.versionedPath()))
	if a.loader, err = newAsset("loader.js", "text/javascript; charset=utf-8", loaderSrc); err != nil {
		return nil, err
	}
	return a, nil
}

// handler serves a with the given Cache-Control.
func (as *assets) handler(a *asset, cacheControl string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveAsset(w, r, a, cacheControl)
	})
}

// serveVersioned serves /widget/v/{version}/{file}. A version that is not the current one
// (a page holding a loader from before a deploy, or a replica not yet updated) is
// redirected to the current bundle rather than failing: the widget keeps working, and
// the redirect itself is not cached for long.
func (as *assets) serveVersioned(w http.ResponseWriter, r *http.Request) {
	var a *asset
	switch r.PathValue("file") {
	case as.js.name:
		a = as.js
	case as.css.name:
		a = as.css
	default:
		http.NotFound(w, r)
		return
	}
	if r.PathValue("version") != a.version {
		w.Header().Set("Cache-Control", "public, max-age=60")
		http.Redirect(w, r, a.versionedPath(), http.StatusFound)
		return
	}
	serveAsset(w, r, a, cacheImmutable)
}

func serveAsset(w http.ResponseWriter, r *http.Request, a *asset, cacheControl string) {
	h := w.Header()
	h.Add("Vary", "Accept-Encoding")
	h.Set("Cache-Control", cacheControl)
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	// Customer pages load these cross-origin; CORP lets pages that opt into
	// cross-origin isolation (COEP) still load them.
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	body, etag := a.body, a.etag
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, a.etagGz
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, a) {
		// 304 carries the ETag of the representation the client asked about.
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// etagMatches applies If-None-Match's weak comparison against either representation's
// ETag: a client holding the identity bytes is as current as one holding the gzip.
func etagMatches(header string, a *asset) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == a.etag || t == a.etagGz {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip (explicitly or through "*"),
// honouring q=0 as a refusal.
func acceptsGzip(header string) bool {
	gz, star := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gzip", "x-gzip":
			gz = q
		case "*":
			star = q
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}
