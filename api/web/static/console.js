/* The console's progressive part: the rules editor checks the draft as you type (the admin API's
 * own check, via /console/rules/check) and Publish stays disabled while the draft is invalid.
 * Without this script every form still works; the server checks again on publish. */
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf");
  var editor = document.getElementById("rules");
  if (!editor || !csrf) return;
  var list = document.getElementById("rules-errors");
  var status = document.getElementById("check-status");
  var publish = document.getElementById("publish-button");
  var timer = null;
  var sent = 0;

  function lineStart(text, line) {
    var at = 0;
    for (var i = 1; i < line && at >= 0; i++) at = text.indexOf("\n", at) + 1;
    return Math.max(at, 0);
  }

  function show(result) {
    list.textContent = "";
    result.errors.forEach(function (e) {
      var li = document.createElement("li");
      li.setAttribute("data-line", e.line || "");
      var where = (e.line ? "line " + e.line + ": " : "") + (e.field ? e.field + ": " : "");
      if (e.line) {
        var jump = document.createElement("button");
        jump.type = "button";
        jump.className = "jump";
        jump.textContent = where + e.message;
        jump.addEventListener("click", function () {
          var start = lineStart(editor.value, e.line);
          var end = editor.value.indexOf("\n", start);
          editor.focus();
          editor.setSelectionRange(start, end < 0 ? editor.value.length : end);
        });
        li.appendChild(jump);
      } else {
        li.textContent = where + e.message;
      }
      list.appendChild(li);
    });
    status.textContent = result.valid ? "Valid: version " + result.version : result.errors.length + " error(s): cannot publish";
    status.className = result.valid ? "check ok" : "check bad";
    editor.setAttribute("aria-invalid", result.valid ? "false" : "true");
    publish.disabled = !result.valid;
  }

  function check() {
    var mine = ++sent;
    fetch("/console/rules/check", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ rules: editor.value })
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (result) {
      if (result && mine === sent) show(result);
    }).catch(function () { status.textContent = "Could not check the draft (the server did not answer)."; });
  }

  editor.addEventListener("input", function () {
    clearTimeout(timer);
    status.textContent = "Checking…";
    timer = setTimeout(check, 250);
  });
  check();
})();

/* The operations page: its numbers, refreshed every 5 seconds. */
(function () {
  "use strict";
  var kpis = document.getElementById("ops-kpis");
  var csrf = document.body.getAttribute("data-csrf");
  if (!kpis || !csrf) return;
  var body = document.querySelector("#ops-routes tbody");

  function cell(row, value, numeric) {
    var td = document.createElement("td");
    if (numeric) td.className = "num";
    td.textContent = value === null || value === undefined ? "" : String(value);
    row.appendChild(td);
  }

  function refresh() {
    fetch(kpis.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "x-csrf-token": csrf } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (n) {
        if (!n) return;
        kpis.querySelectorAll("[data-kpi]").forEach(function (dd) {
          var value = n[dd.getAttribute("data-kpi")];
          dd.textContent = value === null || value === undefined ? "…" : String(Math.round(value * 10) / 10);
        });
        body.textContent = "";
        n.routes.forEach(function (r) {
          var row = document.createElement("tr");
          var code = document.createElement("code");
          code.textContent = r.route;
          var td = document.createElement("td");
          td.appendChild(code);
          row.appendChild(td);
          [r.requests, r.errors, r.p50_ms, r.p95_ms, r.p99_ms].forEach(function (v) { cell(row, v, true); });
          body.appendChild(row);
        });
      }).catch(function () { return null; });
  }
  setInterval(refresh, 5000);
})();
