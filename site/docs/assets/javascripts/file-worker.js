// Search from a site opened from disk (file://): browsers refuse to start a web worker there, so
// the search worker runs in a hidden same-origin iframe instead, with the same message interface.
// Loaded only through mkdocs-material's offline plugin (config.extra.polyfills, set in hooks.py).
(function () {
  if (location.protocol !== "file:") return;

  function IframeWorker(url) {
    var target = document.createElement("div"); // an EventTarget that every browser has
    var self = this;
    var queue = [];
    var ready = false;
    var iframe = document.createElement("iframe");
    iframe.hidden = true;
    iframe.setAttribute("aria-hidden", "true");
    iframe.setAttribute("tabindex", "-1");
    document.body.appendChild(iframe);
    var win = iframe.contentWindow;
    var doc = iframe.contentDocument;

    // What the worker script sends comes back as a "message" event on this object.
    win.postMessage = function (data) {
      var event = new MessageEvent("message", { data: data });
      target.dispatchEvent(event);
      if (typeof self.onmessage === "function") self.onmessage(event);
    };
    win.importScripts = function () {
      throw new Error("importScripts is not available to a search worker opened from file://");
    };

    function deliver(data) {
      win.dispatchEvent(new win.MessageEvent("message", { data: data }));
    }
    this.postMessage = function (data) {
      if (ready) deliver(data);
      else queue.push(data);
    };
    this.addEventListener = target.addEventListener.bind(target);
    this.removeEventListener = target.removeEventListener.bind(target);
    this.dispatchEvent = target.dispatchEvent.bind(target);
    this.terminate = function () {
      iframe.remove();
    };

    var script = doc.createElement("script");
    script.src = new URL(url, location.href).href;
    script.onload = function () {
      ready = true;
      queue.splice(0).forEach(deliver);
    };
    script.onerror = function () {
      var event = new ErrorEvent("error", { message: "cannot load " + script.src });
      target.dispatchEvent(event);
      if (typeof self.onerror === "function") self.onerror(event);
    };
    (doc.head || doc.documentElement).appendChild(script);
  }

  window.Worker = IframeWorker;
})();
