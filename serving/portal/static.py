"""The console's one script, served as /static/console.js.

A Python string rather than a file next to the package: the serving image
installs the checkout with pip and plain modules travel without package-data
configuration (as pages.py's HTML does). No inline script anywhere: the console's
Content-Security-Policy allows scripts from the portal itself only.

What it does:

- on a run's page (section#events): opens an EventSource on the run's stream after
  the last event rendered by the server (the browser resumes with Last-Event-ID
  after a reconnect by itself) and appends each new event, built with DOM calls and
  text nodes (never innerHTML) in the shapes console.event_body makes;
- on the runs page (table#runs[data-stream]): follows the stream of every event the
  user may see and updates the run's row (status, count, last time), or adds the
  new run on top.
"""

CONSOLE_JS = r"""
"use strict";
(function () {
  if (typeof EventSource === "undefined") { return; }
  const KINDS = ["log", "image", "parameters", "file", "html", "status", "alert", "metrics"];

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function when(iso) { return String(iso || "").replace("T", " ").slice(0, 19); }
  function plain(v) { return typeof v === "string" ? v : JSON.stringify(v); }
  function badge(text) { return el("span", {"class": "badge " + text}, [text]); }
  function table(values) {
    const rows = Object.keys(values || {}).map(function (k) {
      return el("tr", {}, [el("td", {}, [el("code", {}, [k])]), el("td", {}, [plain(values[k])])]);
    });
    const head = el("tr", {}, [el("th", {}, ["name"]), el("th", {}, ["value"])]);
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }
  // An EventSource calling onEvent with each event's JSON (unnamed or named by kind).
  function follow(url, onEvent, setLive) {
    const source = new EventSource(url);
    function handle(message) {
      let ev;
      try { ev = JSON.parse(message.data); } catch (e) { return; }
      if (!ev || typeof ev !== "object") { return; }
      if (ev.seq === undefined) { ev.seq = message.lastEventId; }
      onEvent(ev);
    }
    source.onopen = function () { setLive("live", "up"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setLive("notifications service unavailable", "failed");
      } else {
        setLive("reconnecting", "warning");
      }
    };
    source.onmessage = handle;
    KINDS.forEach(function (kind) { source.addEventListener(kind, handle); });
    window.addEventListener("pagehide", function () { source.close(); });
  }
  const live = document.getElementById("live");
  function setLive(text, cls) {
    if (live) { live.textContent = text; live.className = "badge " + cls; }
  }

  // --- one run's events ----------------------------------------------------------
  const section = document.getElementById("events");
  const contentBase = section ? section.dataset.content : "";
  function contentUrl(ev) { return contentBase + encodeURIComponent(ev.id) + "/content"; }

  function body(ev) {
    const data = ev.data || {};
    const link = ev.link;
    if (ev.kind === "image" && link) {
      const url = contentUrl(ev);
      return [el("a", {href: url, target: "_blank", rel: "noopener"},
                 [el("img", {src: url, alt: ev.title || link.name || "image"})])];
    }
    if (link) {
      const name = link.name || ev.title || "download";
      return [el("a", {href: contentUrl(ev), download: name}, [name]),
              el("small", {}, [" (" + (link.content_type || "") + ", " + (link.size || "?") + " bytes)"])];
    }
    switch (ev.kind) {
      case "log": return [el("pre", {}, [String(data.text || "")])];
      case "parameters":
      case "metrics":
        return (data.step !== undefined && data.step !== null ? [el("small", {}, ["step " + data.step])] : [])
          .concat([table(data.values)]);
      case "status": return [badge(String(data.state || "")), " " + (data.message || "")];
      case "alert": {
        const out = [badge(String(data.severity || "warning")), " " + (data.message || "")];
        if (data.details && Object.keys(data.details).length) { out.push(table(data.details)); }
        return out;
      }
      case "html": {
        const frame = el("iframe", {sandbox: ""});
        frame.srcdoc = String(data.html || "");
        return [frame];
      }
      default: return [el("pre", {}, [JSON.stringify(data, null, 1)])];
    }
  }

  function render(ev) {
    const head = [when(ev.time)];
    if (ev.step) { head.push(" \u00b7 " + ev.step); }
    head.push(" \u00b7 " + (ev.kind || ""));
    if (ev.title) { head.push(" \u00b7 "); head.push(el("strong", {}, [ev.title])); }
    return el("article", {"class": "event kind-" + ev.kind, "data-seq": String(ev.seq),
                          "data-kind": ev.kind || ""},
              [el("header", {}, head)].concat(body(ev)));
  }

  if (section) {
    const seen = new Set();
    section.querySelectorAll(".event").forEach(function (e) { seen.add(e.dataset.seq); });
    follow(section.dataset.stream + "?after=" + encodeURIComponent(section.dataset.after || "0"),
      function (ev) {
        if (seen.has(String(ev.seq))) { return; }
        seen.add(String(ev.seq));
        const empty = document.getElementById("no-events");
        if (empty) { empty.remove(); }
        section.appendChild(render(ev));
      }, setLive);
  }

  // --- the runs list -------------------------------------------------------------
  const runs = document.querySelector("table#runs[data-stream]");
  if (runs) {
    const tbody = runs.tBodies[0];
    function runHref(run) { return "/runs/" + run.split("/").map(encodeURIComponent).join("/"); }
    function newRow(ev) {
      const cells = [el("a", {href: runHref(ev.run)}, [ev.run]), ev.workflow || "-", ev.user || "",
                     badge("-"), "0", ""];
      const row = el("tr", {"data-run": ev.run}, cells.map(function (c) { return el("td", {}, [c]); }));
      return row;
    }
    follow(runs.dataset.stream, function (ev) {
      if (!ev.run) { return; }
      let row = Array.from(tbody.rows).find(function (r) { return r.dataset.run === ev.run; });
      if (!row) { row = newRow(ev); }
      const cells = row.cells;
      if (ev.kind === "status" && ev.data && ev.data.state) {
        cells[3].replaceChildren(badge(String(ev.data.state)));
      }
      const count = parseInt(cells[4].textContent, 10);
      if (!isNaN(count)) { cells[4].textContent = String(count + 1); }
      cells[5].textContent = when(ev.time);
      tbody.insertBefore(row, tbody.firstChild);
      const empty = document.getElementById("no-runs");
      if (empty) { empty.remove(); }
    }, setLive);
  }
})();
"""
