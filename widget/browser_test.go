package widget_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
)

// The widget in a real browser: Debian's chromium, headless, driven by chromedp. A
// customer page is served from one loopback origin, the service from another, with the
// echo runtime as Langflow behind the gateway.

const chromiumPath = "/usr/bin/chromium"

// Texts of widget.js that the tests look for.
const (
	textRefused = "This chat isn't available on this website right now."
	textOffline = "Can't reach the chat service. Check your connection and try again."
	textFailed  = "The assistant couldn't answer. Please try again."
)

// newBrowser starts a fresh chromium (its own profile directory) for one test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing (.ci/deps.sh installs it): %v", chromiumPath, err)
		}
		t.Skipf("%s is not installed (apt-get install -y chromium)", chromiumPath)
	}
	dir, err := os.MkdirTemp("", "widget-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		// Chromium's helpers can write to the profile for a moment after it exits.
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shadow is a JS expression for the widget's shadow root (null before it is mounted).
const shadow = `(document.querySelector('gsv-widget') && document.querySelector('gsv-widget').shadowRoot)`

func in(sel string) string { return shadow + `.querySelector(` + jsString(sel) + `)` }

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor polls a JS predicate; on timeout it fails with what the widget shows.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(15*time.Second),
		chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const r = `+shadow+`; return r ? r.querySelector('.root').innerText : 'no widget: ' + document.body.innerText })()`))
		t.Fatalf("waiting for %s: %v; widget shows: %q", what, err, state)
	}
}

// waitLauncher waits until the widget is mounted and styled.
func waitLauncher(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, "the launcher", `(() => { const r = `+shadow+`; if (!r) return false;
		const l = r.querySelector('.launcher'); if (!l) return false;
		const b = l.getBoundingClientRect();
		return b.width > 40 && b.height > 40 && getComputedStyle(r.querySelector('.root')).visibility === 'visible'; })()`)
}

func openPanel(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, chromedp.Click(chromedp.JSPath(in(".launcher"))))
	waitFor(t, ctx, "the open panel", `!`+in(".panel")+`.hidden && `+shadow+`.activeElement === `+in(".input"))
}

// botTexts are the agent's answers shown (not the greeting).
const botTexts = `Array.from(` + shadow + `.querySelectorAll('.msg.bot:not(.greeting) .text')).map(e => e.textContent)`

// sendMessage types text into the focused input like a visitor and presses Enter.
func sendMessage(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	run(t, ctx, chromedp.Focus(chromedp.JSPath(in(".input"))), chromedp.KeyEvent(text), chromedp.KeyEvent(kb.Enter))
}

// waitAnswer waits for the n-th answer (1-based) to be complete and the widget idle.
func waitAnswer(t *testing.T, ctx context.Context, n int, want string) {
	t.Helper()
	waitFor(t, ctx, fmt.Sprintf("answer %d %q", n, want), fmt.Sprintf(`(() => { const a = %s; return a.length === %d && a[%d] === %s
		&& !%s.disabled && %s.hidden && !%s.querySelector('[aria-busy]'); })()`,
		botTexts, n, n-1, jsString(want), in(".send"), in(".typing"), shadow))
}

// answer is what the echo runtime answers to input under the demo persona.
func answer(input string) string { return "[You are a friendly demo assistant.] echo: " + input }

// observeAnswers records every text the last answer bubble shows, to prove streaming.
const observeAnswers = `(() => { window.__seen = []; const r = ` + shadow + `;
	window.__typingSeen = false;
	new MutationObserver(() => { if (!r.querySelector('.typing').hidden) window.__typingSeen = true; })
	.observe(r.querySelector('.typing'), {attributes: true});
	new MutationObserver(() => { const b = r.querySelectorAll('.msg.bot:not(.greeting) .text');
		if (b.length) window.__seen.push(b[b.length - 1].textContent); })
	.observe(r.querySelector('.log'), {subtree: true, childList: true, characterData: true}); return true; })()`

func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// lastSession is the caller's part of the session id of the last Langflow run.
func lastSession(t *testing.T, e *env) string {
	t.Helper()
	var body struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(e.echo.LastRunBody(), &body); err != nil {
		t.Fatal(err)
	}
	prefix := string(e.tenantID) + ":" + string(e.configID) + ":"
	if !strings.HasPrefix(body.SessionID, prefix) {
		t.Fatalf("Langflow session %q lacks the tenant:config namespace", body.SessionID)
	}
	return strings.TrimPrefix(body.SessionID, prefix)
}

// The loader renders the launcher; opening, typing and sending shows the answer streamed
// in; a reload keeps the conversation and its session.
func TestBrowserChat(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"chat": {}})
	e.allowOrigins(host.URL)

	run(t, ctx, chromedp.Navigate(host.URL+"/p/chat"))
	waitLauncher(t, ctx)
	if got := eval[string](t, ctx, in(".launcher")+`.getAttribute('aria-expanded')`); got != "false" {
		t.Fatalf("aria-expanded before opening: %q", got)
	}
	openPanel(t, ctx)
	// Portal settings arrived through the config endpoint.
	if got := eval[string](t, ctx, in(".title")+`.textContent`); got != "Demo chat" {
		t.Fatalf("title %q", got)
	}
	if got := eval[string](t, ctx, in(".msg.greeting .text")+`.textContent`); got != "Hi! Say something and I will say it back." {
		t.Fatalf("greeting %q", got)
	}
	for attr, want := range map[string]string{
		in(".panel") + `.getAttribute('role')`:             "dialog",
		in(".log") + `.getAttribute('role')`:               "log",
		in(".log") + `.getAttribute('aria-live')`:          "polite",
		in(".launcher") + `.getAttribute('aria-expanded')`: "true",
		in(".input") + `.getAttribute('aria-label')`:       "Message",
		`document.getElementById(` + in(".panel") + `.getAttribute('aria-labelledby')) === null && ` +
			shadow + `.getElementById(` + in(".panel") + `.getAttribute('aria-labelledby')).textContent`: "Demo chat",
	} {
		if got := eval[string](t, ctx, attr); got != want {
			t.Errorf("%s = %q, want %q", attr, got, want)
		}
	}

	eval[bool](t, ctx, observeAnswers)
	const first = "hello there general kenobi, how are you today"
	sendMessage(t, ctx, first)
	waitFor(t, ctx, "the typing indicator or a first token", `!`+in(".typing")+`.hidden || `+botTexts+`.length > 0`)
	waitAnswer(t, ctx, 1, answer(first))
	seen := eval[[]string](t, ctx, `window.__seen`)
	partial := false
	for _, s := range seen {
		if s != "" && len(s) < len(answer(first)) && strings.HasPrefix(answer(first), s) {
			partial = true
		}
	}
	if !eval[bool](t, ctx, `window.__typingSeen`) {
		t.Error("the typing indicator never showed")
	}
	if !partial {
		t.Fatalf("no partial answer was shown before the final one: %q", seen)
	}
	if got := eval[string](t, ctx, in(".msg.user .text")+`.textContent`); got != first {
		t.Fatalf("user bubble %q", got)
	}
	screenshot(t, ctx, "widget-open-answer.png")

	sid := eval[string](t, ctx, `JSON.parse(localStorage.getItem('gsv-widget:`+string(e.configID)+`')).sid`)
	if sid == "" || lastSession(t, e) != sid {
		t.Fatalf("stored session %q, sent %q", sid, lastSession(t, e))
	}

	// A reload continues the conversation: history shown, same session sent.
	run(t, ctx, chromedp.Reload())
	waitLauncher(t, ctx)
	openPanel(t, ctx)
	if got := eval[[]string](t, ctx, botTexts); !reflect.DeepEqual(got, []string{answer(first)}) {
		t.Fatalf("history after reload: %q", got)
	}
	if n := eval[int](t, ctx, shadow+`.querySelectorAll('.msg.greeting').length`); n != 0 {
		t.Fatal("greeting shown above an existing conversation")
	}
	sendMessage(t, ctx, "second")
	waitAnswer(t, ctx, 2, answer("second"))
	if got := lastSession(t, e); got != sid {
		t.Fatalf("after reload the session is %q, want %q", got, sid)
	}

	// A new conversation forgets the history and starts a new session.
	run(t, ctx, chromedp.Click(chromedp.JSPath(in(".reset"))))
	waitFor(t, ctx, "an empty conversation", botTexts+`.length === 0 && `+shadow+`.querySelectorAll('.msg.greeting').length === 1`)
	sendMessage(t, ctx, "third")
	waitAnswer(t, ctx, 1, answer("third"))
	if got := lastSession(t, e); got == sid || got == "" {
		t.Fatalf("new conversation reused session %q", got)
	}
}

// A failed send offers a retry, which sends the same message again without repeating it.
func TestBrowserRetry(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"chat": {}})
	e.allowOrigins(host.URL)
	run(t, ctx, chromedp.Navigate(host.URL+"/p/chat"))
	waitLauncher(t, ctx)
	openPanel(t, ctx)

	e.echo.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Status: 500, Detail: "boom", Times: 1})
	sendMessage(t, ctx, "try me")
	waitFor(t, ctx, "the failure", `!`+in(".alert")+`.hidden && !`+in(".retry")+`.hidden && !`+in(".send")+`.disabled`)
	if got := eval[string](t, ctx, in(".alert-text")+`.textContent`); got != textFailed {
		t.Fatalf("failure text %q", got)
	}
	if n := eval[int](t, ctx, botTexts+`.length`); n != 0 {
		t.Fatal("a failed call left an answer")
	}
	run(t, ctx, chromedp.Click(chromedp.JSPath(in(".retry"))))
	waitAnswer(t, ctx, 1, answer("try me"))
	if n := eval[int](t, ctx, shadow+`.querySelectorAll('.msg.user').length`); n != 1 {
		t.Fatalf("%d user bubbles after a retry", n)
	}
	if !eval[bool](t, ctx, in(".alert")+`.hidden`) {
		t.Fatal("the failure is still shown after a successful retry")
	}

	// "New conversation" in the middle of an answer drops it quietly: no failure shown,
	// and the widget is ready for the next message.
	sendMessage(t, ctx, strings.Repeat("word ", 40))
	waitFor(t, ctx, "the answer streaming", botTexts+`.length === 2`)
	run(t, ctx, chromedp.Click(chromedp.JSPath(in(".reset"))), chromedp.Sleep(400*time.Millisecond))
	if got := eval[string](t, ctx, `[`+botTexts+`.length, `+in(".alert")+`.hidden, `+in(".send")+`.disabled, `+in(".typing")+`.hidden].join()`); got != "0,true,false,true" {
		t.Fatalf("after a reset mid-answer (answers, alert hidden, send disabled, typing hidden): %s", got)
	}
	sendMessage(t, ctx, "again")
	waitAnswer(t, ctx, 1, answer("again"))
}

// What the agent or the visitor writes is shown as text: markup in an answer runs nothing.
func TestBrowserAnswerIsText(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"chat": {}})
	e.allowOrigins(host.URL)
	run(t, ctx, chromedp.Navigate(host.URL+"/p/chat"))
	waitLauncher(t, ctx)
	openPanel(t, ctx)

	const payload = `<img src=x onerror=window.__pwned=1> <script>window.__pwned=1</script> <b>bold</b>`
	sendMessage(t, ctx, payload)
	waitAnswer(t, ctx, 1, answer(payload)) // the echo runtime sends it back as the answer
	time.Sleep(300 * time.Millisecond)     // time for an injected onerror to fire
	if got := eval[string](t, ctx, `typeof window.__pwned`); got != "undefined" {
		t.Fatalf("window.__pwned is %s: markup ran", got)
	}
	if n := eval[int](t, ctx, shadow+`.querySelectorAll('.log img, .log script, .log b').length + document.querySelectorAll('img, b').length`); n != 0 {
		t.Fatalf("%d elements were made from message text", n)
	}
	if got := eval[string](t, ctx, in(".msg.user .text")+`.textContent`); got != payload {
		t.Fatalf("visitor's message shown as %q", got)
	}
	// And after a reload, from the stored history.
	run(t, ctx, chromedp.Reload())
	waitLauncher(t, ctx)
	openPanel(t, ctx)
	time.Sleep(300 * time.Millisecond)
	if got := eval[string](t, ctx, `typeof window.__pwned`); got != "undefined" {
		t.Fatalf("window.__pwned is %s after reload", got)
	}
	if got := eval[[]string](t, ctx, botTexts); len(got) != 1 || got[0] != answer(payload) {
		t.Fatalf("history: %q", got)
	}
}

// A page on an origin the config does not list gets the refusal message and no answer.
func TestBrowserForeignOrigin(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	allowed := e.hostServer(map[string]hostPage{})
	foreign := e.hostServer(map[string]hostPage{"chat": {init: `{configId: "{{config}}", apiKey: "{{key}}", title: "Help"}`}})
	e.allowOrigins(allowed.URL)

	run(t, ctx, chromedp.Navigate(foreign.URL+"/p/chat"))
	waitLauncher(t, ctx)
	openPanel(t, ctx)
	if got := eval[string](t, ctx, in(".alert-text")+`.textContent`); got != textRefused || eval[bool](t, ctx, in(".alert")+`.hidden`) {
		t.Fatalf("refusal on load: %q", got)
	}
	if txt := eval[string](t, ctx, in(".root")+`.innerText`); strings.Contains(txt, "undefined") || strings.Contains(txt, "null") {
		t.Fatalf("the widget shows %q", txt)
	}
	// The page's own options still apply (the portal's could not be read).
	if got := eval[string](t, ctx, in(".title")+`.textContent`); got != "Help" {
		t.Fatalf("title %q", got)
	}
	sendMessage(t, ctx, "hello?")
	waitFor(t, ctx, "the refusal after sending", `!`+in(".alert")+`.hidden && !`+in(".send")+`.disabled && `+in(".typing")+`.hidden`)
	if got := eval[string](t, ctx, in(".alert-text")+`.textContent`); got != textRefused {
		t.Fatalf("refusal after sending: %q", got)
	}
	if n := eval[int](t, ctx, shadow+`.querySelectorAll('.msg.bot').length`); n != 0 {
		t.Fatalf("%d answers shown to a foreign origin: %q", n, eval[string](t, ctx, in(".log")+`.innerText`))
	}
	if n := e.echo.Calls(); n != 0 {
		t.Fatalf("Langflow ran %d times for a foreign origin", n)
	}
}

// When the service cannot be reached the visitor is told so, not that the site is refused.
func TestBrowserServiceUnreachable(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"chat": {}})
	e.allowOrigins(host.URL)
	run(t, ctx, chromedp.Navigate(host.URL+"/p/chat"))
	waitLauncher(t, ctx)
	openPanel(t, ctx)
	e.svc.CloseClientConnections()
	e.svc.Close()
	sendMessage(t, ctx, "anyone?")
	waitFor(t, ctx, "the offline message", `!`+in(".alert")+`.hidden && !`+in(".send")+`.disabled`)
	if got := eval[string](t, ctx, in(".alert-text")+`.textContent`); got != textOffline {
		t.Fatalf("unreachable service: %q", got)
	}
	if eval[bool](t, ctx, in(".retry")+`.hidden`) {
		t.Fatal("no retry offered")
	}
}

// styleSnapshot is what the visitor sees of the widget: the computed styles and boxes of
// its parts.
const styleSnapshot = `(() => {
	const r = ` + shadow + `;
	const props = ['display', 'visibility', 'position', 'color', 'background-color', 'font-size', 'font-family',
		'font-style', 'font-weight', 'line-height', 'letter-spacing', 'opacity', 'transform', 'filter', 'box-sizing',
		'border-radius', 'padding-top', 'width', 'height'];
	const out = {};
	for (const sel of ['.root', '.launcher', '.panel', '.head', '.title', '.log', '.msg.greeting', '.input', '.send', '.form']) {
		const el = r.querySelector(sel);
		if (!el) { out[sel] = 'missing'; continue; }
		const cs = getComputedStyle(el), b = el.getBoundingClientRect();
		out[sel] = props.map(p => p + ': ' + cs.getPropertyValue(p)).join('; ') +
			'; box: ' + [b.x, b.y, b.width, b.height].map(Math.round).join(',');
	}
	const hs = getComputedStyle(document.querySelector('gsv-widget'));
	out.host = ['display', 'transform', 'opacity', 'filter', 'color', 'font-size', 'position'].map(p => p + ': ' + hs.getPropertyValue(p)).join('; ');
	return JSON.stringify(out);
})()`

// hostileCSS restyles common elements and the widget's host element itself.
const hostileCSS = `
button, input, textarea, div, p, span, form, svg, img { display: none !important; color: red !important; font-size: 40px !important; }
* { box-sizing: content-box !important; letter-spacing: 3px !important; }
html { font-size: 40px !important; }
:root { --gsv-primary: red; --gsv-bg: black; --gsv-fg: yellow; }
gsv-widget { display: none !important; color: red !important; font: italic 40px/3 serif !important;
	transform: scale(.5) !important; opacity: .3 !important; filter: blur(3px) !important; position: absolute !important; }
gsv-widget * { display: none !important; }
`

// A hostile host stylesheet changes nothing inside the widget.
func TestBrowserHostileStylesheet(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"plain": {}, "hostile": {css: hostileCSS}})
	e.allowOrigins(host.URL)
	snapshot := func(page string) map[string]string {
		t.Helper()
		run(t, ctx, chromedp.Navigate(host.URL+"/p/"+page))
		waitLauncher(t, ctx)
		closed := eval[string](t, ctx, styleSnapshot)
		openPanel(t, ctx)
		// The pointer rests on the launcher after the click, which scales it: move away
		// and let the transition finish.
		run(t, ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1), chromedp.Sleep(300*time.Millisecond))
		// The caret blinks: take focus away so both snapshots see the same input.
		eval[bool](t, ctx, `(`+in(".input")+`.blur(), true)`)
		open := eval[string](t, ctx, styleSnapshot)
		var a, b map[string]string
		if err := json.Unmarshal([]byte(closed), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(open), &b); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, v := range a {
			out["closed "+k] = v
		}
		for k, v := range b {
			out["open "+k] = v
		}
		return out
	}
	plain := snapshot("plain")
	if eval[string](t, ctx, `getComputedStyle(document.querySelector('h1')).display`) != "block" {
		t.Fatal("the plain page is not plain")
	}
	hostile := snapshot("hostile")
	if eval[string](t, ctx, `getComputedStyle(document.querySelector('p')).display`) != "none" {
		t.Fatal("the hostile stylesheet did not apply to the page")
	}
	screenshot(t, ctx, "widget-hostile-page.png")
	for k, want := range plain {
		if got := hostile[k]; got != want {
			t.Errorf("%s changed under the hostile stylesheet:\n plain:   %s\n hostile: %s", k, want, got)
		}
	}
	if !strings.Contains(plain["open .launcher"], "display: flex") || !strings.Contains(plain["open .panel"], "display: flex") {
		t.Fatalf("unexpected baseline: %v", plain)
	}
}

// Keyboard: Tab reaches the launcher, Enter opens with focus in the input, Escape closes
// and gives focus back to the launcher. On a 360 px wide phone the panel fits the screen.
func TestBrowserKeyboardAndPhone(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{"chat": {}})
	e.allowOrigins(host.URL)
	run(t, ctx, chromedp.Navigate(host.URL+"/p/chat"))
	waitLauncher(t, ctx)

	onLauncher := `document.activeElement === document.querySelector('gsv-widget') && ` + shadow + `.activeElement === ` + in(".launcher")
	reached := false
	for range 10 {
		run(t, ctx, chromedp.KeyEvent(kb.Tab))
		if eval[bool](t, ctx, onLauncher) {
			reached = true
			break
		}
	}
	if !reached {
		t.Fatal("Tab never reached the launcher")
	}
	run(t, ctx, chromedp.KeyEvent(kb.Enter))
	waitFor(t, ctx, "open with focus in the input", `!`+in(".panel")+`.hidden && `+shadow+`.activeElement === `+in(".input"))
	run(t, ctx, chromedp.KeyEvent(kb.Escape))
	waitFor(t, ctx, "closed with focus on the launcher", in(".panel")+`.hidden && `+onLauncher)
	if got := eval[string](t, ctx, in(".launcher")+`.getAttribute('aria-expanded')`); got != "false" {
		t.Fatalf("aria-expanded after Escape: %q", got)
	}

	// A phone.
	run(t, ctx, chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2)))
	run(t, ctx, chromedp.Reload())
	waitLauncher(t, ctx)
	openPanel(t, ctx)
	sendMessage(t, ctx, "hi from a phone")
	waitAnswer(t, ctx, 1, answer("hi from a phone"))
	fits := eval[string](t, ctx, `(() => { const r = `+shadow+`, bad = [];
		for (const sel of ['.panel', '.head', '.log', '.input', '.send', '.close', '.reset']) {
			const b = r.querySelector(sel).getBoundingClientRect();
			if (b.width <= 0 || b.left < 0 || b.right > innerWidth + 0.5 || b.top < 0 || b.bottom > innerHeight + 0.5) bad.push(sel + ' ' + JSON.stringify(b));
		}
		return bad.join('; '); })()`)
	if fits != "" {
		t.Fatalf("at 360 px these do not fit: %s", fits)
	}
	screenshot(t, ctx, "widget-phone-360.png")
	// Escape still closes and the launcher comes back with focus.
	run(t, ctx, chromedp.KeyEvent(kb.Escape))
	waitFor(t, ctx, "closed on the phone", in(".panel")+`.hidden && `+onLauncher)
}

// The JavaScript API: calls made before the bundle loaded are replayed; startOpen, open,
// close and destroy work; a container renders the chat inline.
func TestBrowserAPI(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	host := e.hostServer(map[string]hostPage{
		"open": {init: `{configId: "{{config}}", apiKey: "{{key}}", startOpen: true, title: "Page title",
			greeting: "Page greeting", position: "bottom-left", theme: {primary: "rgb(10, 120, 60)"}, user: {id: "u1", name: "Ann"}}`},
		"head": {head: true, init: `{configId: "{{config}}", apiKey: "{{key}}"}`},
		"inline": {body: `<div id="chatbox" style="width: 400px; height: 500px"></div>`,
			init: `{configId: "{{config}}", apiKey: "{{key}}", container: "#chatbox", theme: "dark"}`},
	})
	e.allowOrigins(host.URL)

	run(t, ctx, chromedp.Navigate(host.URL+"/p/open"))
	waitFor(t, ctx, "open at start", shadow+` && `+in(".panel")+` && !`+in(".panel")+`.hidden`)
	for expr, want := range map[string]string{
		in(".title") + `.textContent`:                                        "Page title",
		in(".msg.greeting .text") + `.textContent`:                           "Page greeting",
		`getComputedStyle(` + in(".launcher") + `).backgroundColor`:          "rgb(10, 120, 60)",
		`String(` + in(".root") + `.classList.contains('pos-left'))`:         "true",
		`String(` + in(".launcher") + `.getBoundingClientRect().left < 100)`: "true",
	} {
		if got := eval[string](t, ctx, expr); got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
	// Page options override the portal's; the startOpen panel did not steal focus.
	if eval[bool](t, ctx, `document.activeElement === document.querySelector('gsv-widget')`) {
		t.Error("startOpen moved focus into the widget")
	}
	eval[bool](t, ctx, `(GSVWidget.close(), true)`)
	waitFor(t, ctx, "closed by the API", in(".panel")+`.hidden`)
	eval[bool](t, ctx, `(GSVWidget.open(), true)`)
	waitFor(t, ctx, "opened by the API", `!`+in(".panel")+`.hidden`)
	eval[bool](t, ctx, `(GSVWidget.destroy(), true)`)
	waitFor(t, ctx, "destroyed", `document.querySelector('gsv-widget') === null`)

	// Loaded from <head>, before <body> exists.
	run(t, ctx, chromedp.Navigate(host.URL+"/p/head"))
	waitLauncher(t, ctx)
	if got := eval[string](t, ctx, `document.querySelector('gsv-widget').parentNode.tagName`); got != "BODY" {
		t.Fatalf("mounted under %s", got)
	}

	run(t, ctx, chromedp.Navigate(host.URL+"/p/inline"))
	waitFor(t, ctx, "the inline chat", `document.querySelector('#chatbox > gsv-widget') !== null && `+in(".panel")+` !== null`)
	inline := eval[string](t, ctx, `(() => { const r = `+shadow+`, p = r.querySelector('.panel').getBoundingClientRect(),
		c = document.querySelector('#chatbox').getBoundingClientRect();
		return [r.querySelector('.launcher') === null, r.querySelector('.panel').getAttribute('role'),
			Math.round(p.width) === Math.round(c.width), Math.round(p.height) === Math.round(c.height),
			r.querySelector('.root').classList.contains('theme-dark')].join(','); })()`)
	if inline != "true,region,true,true,true" {
		t.Fatalf("inline: %s", inline)
	}
	sendMessage(t, ctx, "inline hello")
	waitAnswer(t, ctx, 1, answer("inline hello"))
}

// The dev demo page, served by the service itself (same origin: the config GET carries no
// Origin), chats with the seeded config once the service's origin is allowed, as the
// seed allows http://127.0.0.1:8080 for `make run`.
func TestBrowserDemoPage(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	e.allowOrigins(e.svc.URL)
	run(t, ctx, chromedp.Navigate(e.svc.URL+"/widget/demo"))
	waitLauncher(t, ctx)
	if got := eval[string](t, ctx, `document.getElementById('origin').textContent`); got != e.svc.URL {
		t.Fatalf("demo page shows origin %q", got)
	}
	openPanel(t, ctx)
	if got := eval[string](t, ctx, in(".msg.greeting .text")+`.textContent`); got != "Hi! Say something and I will say it back." {
		t.Fatalf("greeting %q: the config was not read", got)
	}
	sendMessage(t, ctx, "demo")
	waitAnswer(t, ctx, 1, answer("demo"))
}
