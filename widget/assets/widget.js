/* GSVWidget: the embeddable chat. Loaded by loader.js, which defined window.GSVWidget
   with a queue of the calls the page made before this file arrived.

   Safety rules of this file:
   - Everything the agent or the visitor writes reaches the DOM through textContent,
     never innerHTML; the only markup built here is our own, with createElement.
   - The whole UI lives in the shadow root of a <gsv-widget> element, so the host page's
     CSS cannot reach it and ours cannot leak out.
   - Only the publishable key ever goes to the network, and only to the service that
     served this file. */
(function (w, d) {
  "use strict";
  var L = w.GSVWidget || {};
  if (L._ready) return; // the bundle was loaded twice: keep the first
  var BASE = L._base || "";
  var CSS_URL = L._css || BASE + "/widget/widget.css";
  var SVGNS = "http://www.w3.org/2000/svg";
  var MAX_HISTORY = 50;
  var MAX_TEXT = 8000;

  // What the visitor reads when something goes wrong. "refused" covers a key or an origin
  // the service does not accept: the visitor cannot fix either, the site owner can.
  var T = {
    refused: "This chat isn't available on this website right now.",
    offline: "Can't reach the chat service. Check your connection and try again.",
    busy: "Too many messages at once. Please wait a moment and try again.",
    quota: "This assistant has reached its usage limit for now. Please try again later.",
    unavailable: "This assistant isn't available at the moment. Please try again later.",
    failed: "The assistant couldn't answer. Please try again.",
    retry: "Retry",
    open: "Open chat",
    close: "Close chat",
    reset: "New conversation",
    send: "Send message",
    input: "Message",
    placeholder: "Type a message\u2026",
    typing: "The assistant is typing",
    you: "You: ",
    bot: "Assistant: ",
    log: "Conversation"
  };

  var uid = 0;
  function nextId(p) { uid += 1; return "gsv-" + p + "-" + uid; }

  function el(tag, cls, attrs) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    for (var k in attrs || {}) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    return e;
  }

  // icon draws one of our fixed SVG paths (no markup strings: see the safety rules).
  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    close: "M6 6l12 12M18 6L6 18",
    send: "M3 20l18-8L3 4v6l12 2-12 2z",
    reset: "M4 12a8 8 0 1 0 2.3-5.7M4 4v4h4"
  };
  function icon(name) {
    var s = d.createElementNS(SVGNS, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    var p = d.createElementNS(SVGNS, "path");
    p.setAttribute("d", ICONS[name]);
    s.appendChild(p);
    s.setAttribute("class", "ic ic-" + name);
    return s;
  }

  function isColor(v) {
    return typeof v === "string" && v.length < 64 && !!(w.CSS && CSS.supports && CSS.supports("color", v));
  }
  function isHTTPURL(v) {
    try { var u = new URL(v); return u.protocol === "https:" || u.protocol === "http:"; } catch (e) { return false; }
  }
  function given(v) { return v !== undefined && v !== null && v !== ""; }
  // pick returns its first given argument; the last one is the default.
  function pick() {
    for (var i = 0; i < arguments.length - 1; i++) if (given(arguments[i])) return arguments[i];
    return arguments[arguments.length - 1];
  }

  // Session ids are made here, before the first message, so that the gateway's
  // per-visitor limit keys on the session from the first call on. Characters stay
  // within what the gateway accepts ([A-Za-z0-9._:@-]).
  function newSession() {
    var a = new Uint8Array(12), s = "w";
    if (w.crypto && w.crypto.getRandomValues) w.crypto.getRandomValues(a);
    else for (var i = 0; i < a.length; i++) a[i] = Math.floor(Math.random() * 256);
    for (var j = 0; j < a.length; j++) s += (a[j] < 16 ? "0" : "") + a[j].toString(16);
    return s;
  }

  // store is localStorage when the browser lets us use it (third-party storage can be
  // blocked, Safari's private mode throws), else memory for this page view.
  function makeStore() {
    var mem = {};
    var ls = null;
    try {
      ls = w.localStorage;
      ls.setItem("gsv-widget:probe", "1");
      ls.removeItem("gsv-widget:probe");
    } catch (e) { ls = null; }
    return {
      get: function (k) {
        try { return ls ? ls.getItem(k) : (mem[k] || null); } catch (e) { return mem[k] || null; }
      },
      set: function (k, v) {
        mem[k] = v;
        try { if (ls) ls.setItem(k, v); } catch (e) { /* full or blocked: memory only */ }
      }
    };
  }

  // readSSE feeds each server-sent event of res to onEvent(name, data) and resolves when
  // the stream ends. onEvent may throw to abort.
  function readSSE(res, onEvent) {
    var reader = res.body.getReader();
    var dec = new TextDecoder();
    var buf = "";
    function drain() {
      var i;
      buf = buf.replace(/\r\n/g, "\n");
      while ((i = buf.indexOf("\n\n")) >= 0) {
        var block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        var name = "message", data = [];
        var lines = block.split("\n");
        for (var k = 0; k < lines.length; k++) {
          var line = lines[k];
          if (line.indexOf("event:") === 0) name = line.slice(6).trim();
          else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        var v;
        try { v = JSON.parse(data.join("\n")); } catch (e) { continue; }
        onEvent(name, v);
      }
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) {
          buf += dec.decode() + "\n\n";
          drain();
          return;
        }
        buf += dec.decode(r.value, { stream: true });
        drain();
        return pump();
      });
    }
    return pump().then(null, function (err) {
      try { reader.cancel(); } catch (e) { /* already closed */ }
      throw err;
    });
  }

  // failure is what a send or the config load ended with: a message for the visitor.
  function failureText(f) {
    switch (f.code) {
      case "UNAUTHENTICATED": case "FORBIDDEN": case "NOT_FOUND": case "REFUSED":
        return T.refused;
      case "RATE_LIMITED": return T.busy;
      case "QUOTA_EXCEEDED": return T.quota;
      case "SUBSCRIPTION_INACTIVE": case "AGENT_NOT_PROVISIONED": return T.unavailable;
      case "OFFLINE": return T.offline;
    }
    if (f.status === 401 || f.status === 403 || f.status === 404) return T.refused;
    return T.failed;
  }

  // networkFailure tells "the service is down" from "the service refused us": a fetch
  // that the browser blocked for CORS (the origin or key was refused, so no
  // Access-Control-Allow-Origin came back) fails exactly like one that never reached the
  // service. A no-cors request for our own loader succeeds whenever the service is up.
  function networkFailure() {
    return fetch(BASE + "/widget/loader.js", { mode: "no-cors", cache: "no-store", credentials: "omit" })
      .then(function () { return { code: "REFUSED" }; }, function () { return { code: "OFFLINE" }; });
  }

  function httpFailure(res) {
    return res.json().then(null, function () { return null; }).then(function (j) {
      var code = j && j.error && typeof j.error.code === "string" ? j.error.code : "";
      return { status: res.status, code: code };
    });
  }

  function Widget(o) {
    this.o = o;
    this.key = "gsv-widget:" + o.configId;
    this.store = makeStore();
    this.state = this.load();
    this.busy = false;
    this.isOpen = false;
    this.dead = false;
    this.pending = null;
    this.ctl = null;
    var self = this;
    this.cfgCtl = new AbortController();
    var timer = setTimeout(function () { self.cfgCtl.abort(); }, 8000);
    fetch(BASE + "/api/widget/config/" + encodeURIComponent(o.configId), {
      headers: { "X-API-Key": o.apiKey, Accept: "application/json" },
      credentials: "omit",
      signal: this.cfgCtl.signal
    }).then(function (res) {
      if (res.ok) return res.json().then(function (cfg) { return { cfg: cfg }; });
      return httpFailure(res).then(function (f) { return { fail: f }; });
    }, function () {
      return self.dead ? {} : networkFailure().then(function (f) { return { fail: f }; });
    }).then(function (r) {
      clearTimeout(timer);
      if (self.dead) return;
      self.mount(r.cfg || {}, r.fail || null);
    });
  }

  Widget.prototype.load = function () {
    var raw = this.store.get(this.key);
    try {
      var s = JSON.parse(raw || "null");
      if (s && typeof s === "object" && Array.isArray(s.msgs)) {
        return {
          sid: typeof s.sid === "string" ? s.sid : null,
          msgs: s.msgs.filter(function (m) { return m && (m.r === "u" || m.r === "b") && typeof m.t === "string"; })
        };
      }
    } catch (e) { /* corrupt: start over */ }
    return { sid: null, msgs: [] };
  };

  Widget.prototype.save = function () {
    var msgs = this.state.msgs.slice(-MAX_HISTORY).map(function (m) {
      return { r: m.r, t: m.t.slice(0, MAX_TEXT) };
    });
    this.state.msgs = msgs;
    this.store.set(this.key, JSON.stringify({ sid: this.state.sid, msgs: msgs }));
  };

  // settings merges the portal's settings (cfg) under the page's options: the page wins.
  Widget.prototype.settings = function (cfg) {
    var o = this.o;
    var theme = o.theme;
    var colors = {};
    if (theme && typeof theme === "object") {
      colors = theme;
      theme = theme.mode;
    }
    theme = pick(theme, cfg.theme, "light");
    if (theme !== "dark" && theme !== "auto") theme = "light";
    var position = pick(o.position, cfg.position, "bottom-right");
    return {
      title: String(pick(o.title, cfg.title, cfg.name, "Chat")),
      name: String(pick(cfg.name, "")),
      greeting: String(pick(o.greeting, cfg.greeting, "")),
      avatar: isHTTPURL(cfg.avatar_url) ? cfg.avatar_url : "",
      theme: theme,
      position: position === "bottom-left" ? "left" : "right",
      colors: {
        "--gsv-primary": pick(colors.primary, cfg.primary_color),
        "--gsv-on-primary": colors.primaryText,
        "--gsv-bg": colors.background,
        "--gsv-fg": colors.text,
        "--gsv-bot-bg": colors.bubble,
        "--gsv-border": colors.border
      }
    };
  };

  Widget.prototype.mount = function (cfg, fail) {
    var self = this, o = this.o, s = this.settings(cfg);
    this.s = s;
    var container = o.container;
    if (typeof container === "string") container = d.querySelector(container);
    this.inline = !!(container && container.appendChild);

    var host = d.createElement("gsv-widget");
    this.host = host;
    if (this.inline) host.setAttribute("data-inline", "");
    var root = host.attachShadow({ mode: "open" });
    var link = el("link", "", { rel: "stylesheet", href: CSS_URL });
    var ui = el("div", "root pos-" + s.position + " theme-" + s.theme + (this.inline ? " inline" : ""));
    // Hidden until our stylesheet is in, so the page never sees unstyled buttons.
    ui.style.visibility = "hidden";
    link.onload = link.onerror = function () { ui.style.visibility = ""; };
    for (var k in s.colors) if (isColor(s.colors[k])) ui.style.setProperty(k, s.colors[k]);
    root.appendChild(link);
    root.appendChild(ui);
    this.ui = ui;

    var panelId = nextId("panel"), titleId = nextId("title");
    if (!this.inline) {
      var launcher = el("button", "launcher", {
        type: "button", "aria-label": T.open, "aria-expanded": "false", "aria-controls": panelId, "aria-haspopup": "dialog"
      });
      launcher.appendChild(icon("chat"));
      launcher.appendChild(icon("close"));
      launcher.addEventListener("click", function () {
        if (self.isOpen) self.close(true); else self.open(true);
      });
      ui.appendChild(launcher);
      this.launcher = launcher;
    }

    var panel = el("div", "panel", { id: panelId, role: this.inline ? "region" : "dialog", "aria-labelledby": titleId });
    if (!this.inline) panel.hidden = true;
    this.panel = panel;

    var head = el("div", "head");
    if (s.avatar) {
      var img = el("img", "avatar", { alt: "", src: s.avatar, referrerpolicy: "no-referrer" });
      img.onerror = function () { img.remove(); };
      head.appendChild(img);
    }
    var titles = el("div", "titles");
    var title = el("div", "title", { id: titleId, role: "heading", "aria-level": "2" });
    title.textContent = s.title;
    titles.appendChild(title);
    if (s.name && s.name !== s.title) {
      var sub = el("div", "sub");
      sub.textContent = s.name;
      titles.appendChild(sub);
    }
    head.appendChild(titles);
    var reset = el("button", "icon-btn reset", { type: "button", "aria-label": T.reset, title: T.reset });
    reset.appendChild(icon("reset"));
    reset.addEventListener("click", function () { self.reset(); });
    head.appendChild(reset);
    if (!this.inline) {
      var close = el("button", "icon-btn close", { type: "button", "aria-label": T.close, title: T.close });
      close.appendChild(icon("close"));
      close.addEventListener("click", function () { self.close(true); });
      head.appendChild(close);
    }
    panel.appendChild(head);

    var log = el("div", "log", { role: "log", "aria-live": "polite", "aria-label": T.log, tabindex: "0" });
    this.log = log;
    panel.appendChild(log);

    var typing = el("div", "typing", { role: "status" });
    typing.hidden = true;
    for (var i = 0; i < 3; i++) typing.appendChild(el("span", "dot", { "aria-hidden": "true" }));
    var typingText = el("span", "sr");
    typingText.textContent = T.typing;
    typing.appendChild(typingText);
    this.typing = typing;
    panel.appendChild(typing);

    var alert = el("div", "alert", { role: "alert" });
    alert.hidden = true;
    var alertText = el("span", "alert-text");
    var retry = el("button", "retry", { type: "button" });
    retry.textContent = T.retry;
    retry.addEventListener("click", function () { self.retry(); });
    alert.appendChild(alertText);
    alert.appendChild(retry);
    this.alert = alert;
    this.alertText = alertText;
    this.retryBtn = retry;
    panel.appendChild(alert);

    var form = el("form", "form");
    var input = el("textarea", "input", { rows: "1", "aria-label": T.input, placeholder: T.placeholder, maxlength: "4000" });
    var send = el("button", "send", { type: "submit", "aria-label": T.send, title: T.send });
    send.appendChild(icon("send"));
    form.appendChild(input);
    form.appendChild(send);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      self.submit();
    });
    input.addEventListener("keydown", function (e) {
      // Enter sends, Shift+Enter is a new line; not while an IME is composing.
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        self.submit();
      }
    });
    this.input = input;
    this.sendBtn = send;
    panel.appendChild(form);
    ui.appendChild(panel);

    ui.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && self.isOpen && !self.inline) {
        e.stopPropagation();
        self.close(true);
      }
    });

    this.renderLog();
    if (fail) {
      this.failedConfig = true;
      this.showAlert(failureText(fail), false);
    }

    if (this.inline) {
      container.appendChild(host);
      this.isOpen = true;
    } else {
      (d.body || d.documentElement).appendChild(host);
      if (o.startOpen || this.openRequested) this.open(false);
    }
  };

  Widget.prototype.renderLog = function () {
    var log = this.log;
    while (log.firstChild) log.removeChild(log.firstChild);
    if (this.s.greeting && !this.state.msgs.length) this.addBubble("b", this.s.greeting, "greeting");
    for (var i = 0; i < this.state.msgs.length; i++) this.addBubble(this.state.msgs[i].r, this.state.msgs[i].t);
  };

  // addBubble renders one message as text and returns the element holding its text.
  Widget.prototype.addBubble = function (role, text, extra) {
    var m = el("div", "msg " + (role === "u" ? "user" : "bot") + (extra ? " " + extra : ""));
    var who = el("span", "sr");
    who.textContent = role === "u" ? T.you : T.bot;
    var body = el("span", "text");
    body.textContent = text;
    m.appendChild(who);
    m.appendChild(body);
    this.log.appendChild(m);
    this.scroll();
    return body;
  };

  Widget.prototype.scroll = function () { this.log.scrollTop = this.log.scrollHeight; };

  Widget.prototype.showAlert = function (text, canRetry) {
    this.alertText.textContent = text;
    this.retryBtn.hidden = !canRetry;
    this.alert.hidden = false;
  };
  Widget.prototype.hideAlert = function () { this.alert.hidden = true; };

  Widget.prototype.setTyping = function (on) {
    this.typing.hidden = !on;
    if (on) this.scroll();
  };

  Widget.prototype.open = function (focus) {
    if (!this.panel) { this.openRequested = true; return; } // config still loading
    if (this.inline || this.isOpen) return;
    this.isOpen = true;
    this.panel.hidden = false;
    this.ui.classList.add("open");
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcher.setAttribute("aria-label", T.close);
    this.scroll();
    if (focus) this.input.focus();
  };

  Widget.prototype.close = function (focus) {
    if (!this.panel) { this.openRequested = false; return; }
    if (this.inline || !this.isOpen) return;
    var inside = this.host.shadowRoot.activeElement;
    this.isOpen = false;
    this.panel.hidden = true;
    this.ui.classList.remove("open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.setAttribute("aria-label", T.open);
    // Focus goes back where the visitor started, not to the top of the host page.
    if (focus || inside) this.launcher.focus();
  };

  Widget.prototype.reset = function () {
    // Forget the call in flight first, so its abort is not reported as a failure.
    var ctl = this.ctl;
    this.ctl = null;
    if (ctl) ctl.abort();
    this.state = { sid: null, msgs: [] };
    this.save();
    this.pending = null;
    this.busy = false;
    this.setTyping(false);
    this.sendBtn.disabled = false;
    if (!this.failedConfig) this.hideAlert();
    this.renderLog();
    this.input.focus();
  };

  Widget.prototype.submit = function () {
    var text = this.input.value.trim();
    if (!text || this.busy) return;
    this.input.value = "";
    this.state.msgs.push({ r: "u", t: text });
    this.addBubble("u", text);
    this.save();
    this.send(text);
  };

  Widget.prototype.retry = function () {
    if (this.pending && !this.busy) this.send(this.pending);
  };

  // send asks the gateway for an answer to text, streaming it into a new bubble.
  Widget.prototype.send = function (text) {
    var self = this;
    this.pending = text;
    this.busy = true;
    this.hideAlert();
    this.failedConfig = false;
    this.setTyping(true);
    this.sendBtn.disabled = true;
    if (!this.state.sid) {
      this.state.sid = newSession();
      this.save();
    }
    var ctl = new AbortController();
    this.ctl = ctl;
    var bubble = null, got = "", ended = false;
    var body = { input: text, session_id: this.state.sid, stream: true };
    // The page's visitor goes to the flow (never to limits or billing: a page asserts it).
    var u = this.o.user;
    if (u && (u.id || u.name)) {
      body.user = { id: u.id ? String(u.id) : "", name: u.name ? String(u.name) : "" };
    }

    function show(t) {
      if (!bubble) {
        self.setTyping(false);
        bubble = self.addBubble("b", t);
        bubble.parentNode.setAttribute("aria-busy", "true");
      } else {
        bubble.textContent = t;
      }
      self.scroll();
    }
    function finish(v) {
      ended = true;
      var out = v && typeof v.output === "string" ? v.output : got;
      show(out);
      bubble.parentNode.removeAttribute("aria-busy");
      if (v && typeof v.session_id === "string" && v.session_id) self.state.sid = v.session_id;
      self.state.msgs.push({ r: "b", t: out });
      self.save();
    }

    fetch(BASE + "/api/agent-gateway/invoke/", {
      method: "POST",
      headers: {
        Authorization: "Bearer " + this.o.apiKey,
        "Content-Type": "application/json",
        Accept: "text/event-stream"
      },
      body: JSON.stringify(body),
      credentials: "omit",
      signal: ctl.signal
    }).then(function (res) {
      if (!res.ok) return httpFailure(res).then(function (f) { throw f; });
      if ((res.headers.get("Content-Type") || "").indexOf("text/event-stream") < 0) {
        return res.json().then(finish);
      }
      return readSSE(res, function (name, v) {
        if (name === "token" && v && typeof v.chunk === "string") {
          got += v.chunk;
          show(got);
        } else if (name === "end") {
          finish(v);
        } else if (name === "error") {
          throw { code: v && v.code, stream: true };
        }
      }).then(function () {
        if (!ended) throw { code: "INCOMPLETE" };
      });
    }).then(function () {
      if (ctl !== self.ctl) return;
      self.ctl = null;
      self.pending = null;
      self.busy = false;
      self.setTyping(false);
      self.sendBtn.disabled = false;
    }, function (err) {
      if (ctl !== self.ctl || self.dead) return; // reset or destroyed meanwhile
      // Our own failures carry a status or a gateway code; anything else (TypeError,
      // a DOMException) is the network or CORS, which networkFailure tells apart.
      var known = err && (err.status || (typeof err.code === "string" && err.code));
      (known ? Promise.resolve(err) : networkFailure()).then(function (f) {
        if (ctl !== self.ctl || self.dead) return;
        self.ctl = null;
        if (bubble) bubble.parentNode.remove(); // a partial answer must not look complete
        self.busy = false;
        self.setTyping(false);
        self.sendBtn.disabled = false;
        self.showAlert(failureText(f), true);
      });
    });
  };

  Widget.prototype.destroy = function () {
    this.dead = true;
    var ctl = this.ctl;
    this.ctl = null;
    if (ctl) ctl.abort();
    if (this.cfgCtl) this.cfgCtl.abort();
    if (this.host && this.host.parentNode) this.host.parentNode.removeChild(this.host);
  };

  var current = null;
  var api = {
    _ready: true,
    _base: BASE,
    version: 1,
    init: function (o) {
      o = o || {};
      if (!o.configId || !o.apiKey) {
        if (w.console) console.error("GSVWidget.init needs configId and apiKey");
        return;
      }
      if (current) current.destroy();
      current = null;
      if (d.body) {
        current = new Widget(o);
        return;
      }
      // Called from <head>: wait for <body>. Until then the placeholder remembers what
      // the page asked for, and a destroy() cancels the start.
      var waiting = {
        destroy: function () { d.removeEventListener("DOMContentLoaded", start); },
        open: function () { o = Object.assign({}, o, { startOpen: true }); },
        close: function () { o = Object.assign({}, o, { startOpen: false }); }
      };
      var start = function () { if (current === waiting) current = new Widget(o); };
      current = waiting;
      d.addEventListener("DOMContentLoaded", start);
    },
    open: function () { if (current) current.open(true); },
    close: function () { if (current) current.close(true); },
    destroy: function () {
      if (current) current.destroy();
      current = null;
    }
  };
  w.GSVWidget = api;
  var q = L._q || [];
  for (var i = 0; i < q.length; i++) {
    try { api[q[i][0]].apply(api, q[i][1]); } catch (e) { if (w.console) console.error(e); }
  }
})(window, document);
