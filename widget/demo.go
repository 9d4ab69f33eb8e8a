package widget

import (
	"bytes"
	"html/template"
	"net/http"
)

// demoTemplate is the dev demo page: what a buyer's page looks like with the snippet
// pasted in, pointed at the seeded config. html/template escapes the id and key for
// their JavaScript context.
var demoTemplate = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Widget demo</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 46rem; padding: 2rem 1rem; color: #1f2937; }
code { background: #f3f4f6; padding: .1rem .3rem; border-radius: 4px; }
</style>
</head>
<body>
<h1>Chat widget demo</h1>
<p>This page embeds the widget the way a buyer's site does, with the seeded demo config
and its publishable key. The launcher sits in the bottom-right corner.</p>
<p>This page's origin, <code id="origin"></code>, must be one of the config's allowed
origins (the seed allows <code>http://127.0.0.1:8080</code> and <code>http://localhost:8080</code>).</p>
<p>Config <code>{{.ConfigID}}</code></p>
<script>document.getElementById("origin").textContent = location.origin;</script>
<script src="/widget/loader.js"></script>
<script>
  GSVWidget.init({ configId: {{.ConfigID}}, apiKey: {{.Key}} });
</script>
</body>
</html>
`))

func demoPage(configID, key string) ([]byte, error) {
	var buf bytes.Buffer
	err := demoTemplate.Execute(&buf, struct{ ConfigID, Key string }{configID, key})
	return buf.Bytes(), err
}

// serveDemo serves the dev demo page. It is never cached: the key changes on every dev
// start.
func (w *Widget) serveDemo(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = rw.Write(w.demo)
}
