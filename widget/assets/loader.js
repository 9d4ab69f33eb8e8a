/* GSVWidget loader: defines the API at once (calls queue until the widget loads), then
   loads the versioned bundle from the service that served this file. Kept tiny: it is
   on every page of the buyer's site and is revalidated every few minutes. */
(function (w, d) {
  "use strict";
  if (w.GSVWidget && w.GSVWidget._base) return; // pasted twice: the first one wins
  // currentScript is null when the snippet was injected by a tag manager after load.
  var s = d.currentScript || d.querySelector('script[src*="/widget/loader.js"]');
  // The service's root is where this file came from, whatever the page's origin.
  var base = s && s.src ? s.src.replace(/\/widget\/loader\.js([?#].*)?$/, "") : "";
  var q = [];
  var api = { _q: q, _base: base, _css: base + "__GSV_WIDGET_CSS__" };
  ["init", "open", "close", "destroy"].forEach(function (m) {
    api[m] = function () { q.push([m, [].slice.call(arguments)]); };
  });
  w.GSVWidget = api;
  var t = d.createElement("script");
  t.src = base + "__GSV_WIDGET_JS__";
  t.async = true;
  t.onerror = function () {
    if (w.console) console.warn("GSVWidget: the chat could not be loaded from " + base);
  };
  (d.head || d.documentElement).appendChild(t);
})(window, document);
