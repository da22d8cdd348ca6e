"""
The live page: one self-contained HTML document (inline style and script, no external
resources, no build step). It loads state from the ``snapshot`` event that opens each
``events`` stream, then updates the tables in place.

Every value from the server goes into the page with ``textContent``, never as markup.
The Content-Security-Policy allows exactly this page's inline script and style (by hash)
and connections to its own origin.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CONTENT_SECURITY_POLICY", "PAGE", "SCRIPT", "STYLE"]

STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --ok: #1a7f37;
        --warn: #9a6700; --bad: #cf222e; --line: #d0d7de; --flash: #ffd33d88;
        --head: #f6f8fa; --muted: #59636e; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --ok: #3fb950; --warn: #d29922; --bad: #ff7b72;
          --line: #30363d; --flash: #bb800966; --head: #161b22; --muted: #9198a1; }
}
* { box-sizing: border-box; }
html, body { max-width: 100%; overflow-x: hidden; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5em 1.2em; align-items: baseline;
         padding: .8em 1.2em; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.15em; margin: 0; }
#session { overflow-wrap: anywhere; }
.badge { font-weight: 600; padding: .1em .6em; border-radius: 1em; border: 1px solid; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
.dim { color: var(--muted); }
main { padding: .4em 1.2em 1.2em; }
section { margin-top: 1em; }
h2 { font-size: 1em; margin: .4em 0; overflow-wrap: anywhere; }
h2 small { font-weight: normal; color: var(--muted); margin-left: .6em; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .2em .7em; border-bottom: 1px solid var(--line); text-align: left;
         white-space: nowrap; }
th { background: var(--head); font-weight: 600; }
td.num { text-align: right; }
td.null { color: var(--muted); }
td.flash { animation: flash 1s ease-out; }
td.up { color: var(--ok); } td.down { color: var(--bad); }
tr.gone td { opacity: .35; text-decoration: line-through; }
main.stale tbody tr { opacity: .45; filter: grayscale(1); }
main.stale h2 small.dim::after { content: " (stale: the server is not connected)"; }
@keyframes flash { from { background: var(--flash); } to { background: transparent; } }
#log { padding: 0 1.2em 1em; font-size: .9em; color: var(--muted); }
#log div { white-space: pre-wrap; overflow-wrap: anywhere; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const subs = new Map();  // sub -> {mode, fields, items, tbody, rows: Map}
  let lastSnapshotAt = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function note(text, cls) {
    const log = $("log");
    const line = el("div", cls || "", new Date().toLocaleTimeString() + "  " + text);
    log.prepend(line);
    while (log.childNodes.length > 20) log.removeChild(log.lastChild);
  }

  function statusClass(status) {
    if (!status) return "dim";
    if (status.startsWith("CONNECTED:")) return "ok";
    if (status === "DISCONNECTED") return "bad";
    return "warn";
  }

  let upstream = null;  // the server's status, and whether the relay stream is live
  let relayLive = false;

  function markStale() {
    const live = relayLive && upstream !== null && upstream.startsWith("CONNECTED:");
    $("tables").classList.toggle("stale", !live);
  }

  function setStatus(status, reason) {
    const node = $("status");
    node.textContent = status || "unknown";
    node.className = "badge " + statusClass(status);
    node.title = reason || "";
    upstream = status || null;
    markStale();
  }

  function setRelay(text, cls) {
    const node = $("relay");
    node.textContent = text;
    node.className = "badge " + cls;
    relayLive = cls === "ok";
    markStale();
  }

  const HISTORY = 20;  // a DISTINCT table shows its most recent events, newest first

  function addEvent(sub, item, values) {
    const row = makeRow(sub, item, undefined, false);
    row.tr.classList.add("event");
    row.time.textContent = new Date().toLocaleTimeString();
    fill(row, values, null, false);
    sub.tbody.prepend(row.tr);
    while (sub.tbody.rows.length > HISTORY) sub.tbody.lastElementChild.remove();
  }

  const NUMBER = /^-?\d+(\.\d+)?$/;

  function setCell(td, value, flash) {
    const old = td.dataset.value;
    const text = value === null || value === undefined ? "" : String(value);
    td.textContent = text;
    td.dataset.value = text;
    td.classList.toggle("null", value === null);
    td.classList.toggle("num", NUMBER.test(text));
    if (flash && old !== undefined && NUMBER.test(old) && NUMBER.test(text) && old !== text) {
      const up = parseFloat(text) > parseFloat(old);
      td.classList.toggle("up", up);
      td.classList.toggle("down", !up);
    }
    if (flash) {
      td.classList.remove("flash");
      void td.offsetWidth;  // restart the animation
      td.classList.add("flash");
    }
  }

  function rowKey(item, key) { return key === undefined ? item : item + "\u0000" + key; }

  function itemName(ev) {
    return ev.item !== null && ev.item !== undefined ? ev.item : String(ev.pos);
  }

  function ensureColumns(sub, names) {
    let added = false;
    for (const name of names) {
      if (!sub.fields.includes(name)) { sub.fields.push(name); added = true; }
    }
    if (!added) return;
    const head = sub.thead;
    head.replaceChildren();
    if (sub.mode === "DISTINCT") head.append(el("th", "", "received"));
    if (sub.label) head.append(el("th", "", "item"));
    for (const f of sub.fields) head.append(el("th", "", f));
    for (const row of sub.rows.values()) {
      for (const f of sub.fields) {
        if (!row.cells.has(f)) {
          const td = el("td", "null");
          td.dataset.sub = sub.id; td.dataset.item = row.item; td.dataset.field = f;
          row.cells.set(f, td); row.tr.append(td);
        }
      }
    }
  }

  function makeRow(sub, item, key, keep) {
    const tr = el("tr");
    tr.dataset.item = item;
    if (key !== undefined) tr.dataset.key = key;
    const time = el("td", "dim");
    if (sub.mode === "DISTINCT") tr.append(time);
    if (sub.label) tr.append(el("th", "", item));
    const cells = new Map();
    for (const f of sub.fields) {
      const td = el("td", "null");
      td.dataset.sub = sub.id; td.dataset.item = item; td.dataset.field = f;
      if (key !== undefined) td.dataset.key = key;
      cells.set(f, td); tr.append(td);
    }
    const row = { tr, cells, item, time };
    if (keep !== false) sub.rows.set(rowKey(item, key), row);
    return row;
  }

  function fill(row, values, changed, flash) {
    for (const [field, value] of Object.entries(values)) {
      const td = row.cells.get(field);
      if (td) setCell(td, value, flash && (!changed || changed.includes(field)));
    }
  }

  function buildSub(state) {
    const section = el("section");
    section.dataset.sub = state.sub;
    const title = el("h2", "", "#" + state.sub + " " + state.mode);
    const meta = el("small", "", state.items.join(", "));
    title.append(meta);
    const info = el("small", "dim");
    title.append(info);
    const table = el("table");
    const thead = el("tr");
    table.append(el("thead")); table.tHead.append(thead);
    const tbody = el("tbody");
    table.append(tbody);
    const box = el("div", "scroll");  // a wide table scrolls inside its box, not the page
    box.append(table);
    section.append(title, box);
    const sub = { id: state.sub, mode: state.mode, items: state.items.slice(),
                  fields: [], thead, tbody, rows: new Map(), info, lost: 0,
                  keyField: state.key_field, commandField: state.command_field,
                  label: state.mode !== "COMMAND" || state.items.length > 1 };
    ensureColumns(sub, state.fields);
    if (sub.mode === "COMMAND") {
      for (const [item, keys] of Object.entries(state.keys || {})) {
        for (const [key, values] of Object.entries(keys)) {
          const row = makeRow(sub, item, key);
          fill(row, values, null, false);
          tbody.append(row.tr);
        }
      }
    } else if (sub.mode === "DISTINCT") {
      if (state.recent) {
        for (const ev of state.recent) addEvent(sub, itemName(ev), ev.values);
      } else {
        for (const [item, values] of Object.entries(state.rows || {})) {
          addEvent(sub, item, values);
        }
      }
    } else {
      for (const item of sub.items) {
        const row = makeRow(sub, item);
        tbody.append(row.tr);
      }
      for (const [item, values] of Object.entries(state.rows || {})) {
        let row = sub.rows.get(item);
        if (!row) { row = makeRow(sub, item); tbody.append(row.tr); }
        fill(row, values, null, false);
      }
    }
    setInfo(sub, state.subscribed ? "subscribed" : "not subscribed");
    return { sub, section };
  }

  function setInfo(sub, text) {
    sub.state = text;
    sub.info.textContent = " " + text + (sub.lost ? ", " + sub.lost + " update(s) lost" : "");
  }

  function onSnapshot(snap) {
    lastSnapshotAt = Date.now();
    setStatus(snap.status);
    $("session").textContent = snap.session_id ? "session " + snap.session_id : "";
    const main = $("tables");
    subs.clear();
    const sections = [];
    for (const state of snap.subscriptions) {
      const built = buildSub(state);
      subs.set(state.sub, built.sub);
      sections.push(built.section);
    }
    main.replaceChildren(...sections);
    document.body.dataset.ready = "yes";
  }

  function onUpdate(ev) {
    const sub = subs.get(ev.sub);
    if (!sub) return;
    ensureColumns(sub, Object.keys(ev.values));
    const item = itemName(ev);
    if (sub.mode === "COMMAND") {
      const key = sub.keyField ? ev.values[sub.keyField] : undefined;
      const command = sub.commandField ? ev.values[sub.commandField] : undefined;
      const id = rowKey(item, key);
      let row = sub.rows.get(id);
      if (command === "DELETE") {
        if (row) {
          sub.rows.delete(id);
          row.tr.classList.add("gone");
          setTimeout(() => row.tr.remove(), 800);
        }
        return;
      }
      if (!row) {
        row = makeRow(sub, item, key);
        sub.tbody.append(row.tr);
        fill(row, ev.values, null, !ev.snapshot);
        return;
      }
      fill(row, ev.values, ev.changed, !ev.snapshot);
      return;
    }
    if (sub.mode === "DISTINCT") { addEvent(sub, item, ev.values); return; }
    let row = sub.rows.get(item);
    if (!row) { row = makeRow(sub, item); sub.tbody.append(row.tr); }
    fill(row, ev.values, sub.mode === "MERGE" ? ev.changed : null, true);
  }

  function onClear(ev) {
    const sub = subs.get(ev.sub);
    if (!sub) return;
    const item = itemName(ev);
    if (sub.mode === "DISTINCT") {  // its past events of that item go with the snapshot
      for (const tr of [...sub.tbody.rows]) if (tr.dataset.item === item) tr.remove();
      return;
    }
    for (const [id, row] of [...sub.rows]) {
      if (row.item !== item) continue;
      if (sub.mode === "COMMAND") { sub.rows.delete(id); row.tr.remove(); }
      else for (const td of row.cells.values()) setCell(td, null, false);
    }
  }

  function parse(e) {
    try { return JSON.parse(e.data); }
    catch (err) { note("bad event: " + err, "bad"); return null; }
  }

  function on(source, name, handler) {
    source.addEventListener(name, (e) => { const ev = parse(e); if (ev) handler(ev); });
  }

  const source = new EventSource("events");
  setRelay("relay: connecting", "warn");
  source.onopen = () => setRelay("relay: live", "ok");
  source.onerror = () => {
    setRelay(source.readyState === EventSource.CLOSED ? "relay: closed" : "relay: reconnecting",
             source.readyState === EventSource.CLOSED ? "bad" : "warn");
  };
  on(source, "snapshot", onSnapshot);
  on(source, "update", onUpdate);
  on(source, "status", (ev) => setStatus(ev.status, ev.reason));
  on(source, "session", (ev) => {
    $("session").textContent = "session " + ev.session_id;
    note("session " + ev.session_id + " (" + ev.continuity + ")");
  });
  on(source, "subscribed", (ev) => {
    const s = subs.get(ev.sub);
    if (!s) return;
    if (s.mode === "COMMAND") {  // subscribed again: its snapshot comes again, keys and all
      for (const row of s.rows.values()) row.tr.remove();
      s.rows.clear();
    }
    setInfo(s, "subscribed");
  });
  on(source, "unsubscribed", (ev) => {
    const s = subs.get(ev.sub);
    if (s) setInfo(s, "unsubscribed");
  });
  on(source, "clear_snapshot", onClear);
  on(source, "lost", (ev) => {
    const s = subs.get(ev.sub);
    if (s) { s.lost += ev.count; setInfo(s, s.state); }
  });
  on(source, "error", (ev) => note("error " + ev.code + ": " + ev.message +
                                   (ev.sub !== undefined ? " (#" + ev.sub + ")" : ""), "bad"));
  on(source, "gap", (ev) => note("missed events (" + ev.reason + "): reloaded the tables", "warn"));
})();
"""

_BODY = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>txlightstreamer live</title>
<link rel="icon" href="data:,">
<style>{style}</style>
</head>
<body>
<header>
<h1>txlightstreamer live</h1>
<span>server <span id="status" class="badge dim">unknown</span></span>
<span id="relay" class="badge dim">relay</span>
<span id="session" class="dim"></span>
</header>
<main id="tables"><p class="dim">Waiting for the first snapshot&hellip;</p></main>
<div id="log"></div>
<noscript>This page needs JavaScript; the data is also at <a href="snapshot">snapshot</a>
(JSON) and <a href="events">events</a> (Server-Sent Events).</noscript>
<script>{script}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


PAGE: bytes = _BODY.format(style=STYLE, script=SCRIPT).encode("utf-8")

CONTENT_SECURITY_POLICY: bytes = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
).encode("ascii")
