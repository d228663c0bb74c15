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
    if (key) { e.detail.headers["Authorization"] = "Bearer " + key; }
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

  // A queued batch: clear the file field for the next upload.
  document.addEventListener("t2v-batch-queued", function (e) {
    var form = e.target.closest ? e.target.closest("form") : null;
    if (form) { form.reset(); }
  });
})();
