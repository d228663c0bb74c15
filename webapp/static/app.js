// Page glue htmx does not provide: the API key header, copy-to-clipboard, a submit shortcut, field focus.
(function () {
  "use strict";
  var KEY = "t2v.apiKey";

  function storedKey() {
    try { return window.localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  // Every htmx request carries the key, so the page keeps working once API-key auth is on.
  document.addEventListener("htmx:configRequest", function (e) {
    var key = storedKey();
    if (key) {
      e.detail.headers["Authorization"] = "Bearer " + key;
    } else if (e.detail.elt.hasAttribute("data-needs-key")) {
      e.preventDefault();  // the server requires a key and none is stored: asking would only get a 401
    }
  });

  // Filters: leave "All" out of the request, so the pushed address reads /?status=failed, not /?status=failed&batch_id=
  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.elt.id !== "filters") { return; }
    ["status", "batch_id"].forEach(function (name) {
      if (e.detail.parameters[name] === "") { delete e.detail.parameters[name]; }
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("key-form");
    if (!form) { return; }
    var input = document.getElementById("api-key");
    var state = document.getElementById("key-state");
    function show() {
      state.textContent = storedKey() ? "A key is saved in this browser." :
        "No key saved; needed only when the server asks for one.";
    }
    input.value = storedKey();
    show();
    var box = document.getElementById("key-box");
    if (box && storedKey()) { box.open = false; }  // the server cannot know a key is stored here
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      try { window.localStorage.setItem(KEY, input.value.trim()); } catch (err) { state.textContent = "This browser blocks storage."; return; }
      window.location.reload();  // the key decides which tenant's videos the page shows
    });
    document.getElementById("key-forget").addEventListener("click", function () {
      try { window.localStorage.removeItem(KEY); } catch (err) { /* nothing stored */ }
      window.location.reload();
    });
  });

  // 401/403: the server wants a key; open the key box instead of failing silently.
  document.addEventListener("htmx:responseError", function (e) {
    var status = e.detail.xhr && e.detail.xhr.status;
    if (status === 401 || status === 403) {
      var box = document.getElementById("key-box");
      if (box) { box.open = true; }
      var state = document.getElementById("key-state");
      if (state) { state.textContent = "The server refused the request: enter a valid API key."; }
    }
  });

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) { return; }
    var text = button.getAttribute("data-copy");
    var label = button.textContent;
    function done(message) {
      button.textContent = message;
      window.setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done("Copied " + text); },
        function () { done("Seed " + text); });
    } else {
      done("Seed " + text);
    }
  });

  // Media and downloads where keys are required: a <video> or a plain link cannot send the header,
  // so fetch the file with it and hand the browser a blob URL.
  function authBlob(url) {
    return fetch(url, { headers: { "Authorization": "Bearer " + storedKey() } }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status + " for " + url); }
      return r.blob();
    });
  }

  function loadMedia(root) {
    if (!root.querySelectorAll || !storedKey()) { return; }
    var videos = root.querySelectorAll("video[data-src]");
    for (var i = 0; i < videos.length; i++) {
      (function (v) {
        var src = v.getAttribute("data-src");
        var poster = v.getAttribute("data-poster");
        v.removeAttribute("data-src");
        if (poster) {
          authBlob(poster).then(function (b) { v.poster = URL.createObjectURL(b); }, function () { /* no thumbnail */ });
        }
        authBlob(src).then(function (b) { v.src = URL.createObjectURL(b); }, function () {
          v.insertAdjacentHTML("afterend", '<p class="placeholder">Could not load: check the API key</p>');
        });
      })(videos[i]);
    }
  }

  document.addEventListener("htmx:load", function (e) { loadMedia(e.detail.elt); });

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a[data-auth-download]");
    if (!link || !storedKey()) { return; }
    e.preventDefault();
    authBlob(link.href).then(function (b) {
      var url = URL.createObjectURL(b);
      var a = document.createElement("a");
      a.href = url;
      a.download = link.getAttribute("download") || "";
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
    }, function () {
      var box = document.getElementById("key-box");
      if (box) { box.open = true; }
    });
  });

  // Ctrl/Cmd+Enter in the form submits it.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey) || !e.target.closest) { return; }
    var form = e.target.closest("#create-form");
    if (form) { e.preventDefault(); form.requestSubmit(); }
  });

  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.target.id !== "create-form") { return; }
    var bad = e.target.querySelectorAll("[aria-invalid]");
    for (var i = 0; i < bad.length; i++) { bad[i].removeAttribute("aria-invalid"); }
  });

  // A field error: show the field (open "Advanced" if it is there), mark it and focus it.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target.id !== "form-error") { return; }
    var p = e.target.querySelector("[data-param]");
    if (!p) { return; }
    var field = document.querySelector('#create-form [name="' + p.getAttribute("data-param") + '"]');
    if (!field) { return; }
    var details = field.closest("details");
    if (details) { details.open = true; }
    field.setAttribute("aria-invalid", "true");
    field.focus();
  });

  // "Load older videos" replaces itself: move focus to the first newly loaded row, not to the page top.
  var focusRow = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.target.closest && e.target.closest("#more")) {
      focusRow = document.querySelectorAll("#video-rows > article.video").length;
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (focusRow === null) { return; }
    var row = document.querySelectorAll("#video-rows > article.video")[focusRow];
    focusRow = null;
    if (row) { row.setAttribute("tabindex", "-1"); row.focus(); }
  });

  // A queued batch: clear the file field for the next upload.
  document.addEventListener("t2v-batch-queued", function (e) {
    var form = e.target.closest ? e.target.closest("form") : null;
    if (form) { form.reset(); }
  });
})();
