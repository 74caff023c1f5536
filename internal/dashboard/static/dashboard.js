// The dashboard's page: it reads GET /api/apps every 2 s and redraws the
// tables. Every value is put into the page with textContent, never as HTML.
"use strict";

const REFRESH_MS = 2000;

// timed keeps the page's own timings, read by its load test: a mark
// "tandem:<what>-drawn" the first time <what> is drawn (its startTime is
// from the navigation), a measure "tandem:<what>-refresh" of the latest
// cycle (fetched and drawn) and "tandem:<what>-draw" of its drawing (from
// the answer read), each replacing the one before. Layout is
// forced first, so "drawn" includes the browser's style and layout (the
// layout due at the next frame anyway), not the paint.
const drawn = new Set();
function timed(what, start, drawStart) {
  void document.body.offsetHeight;
  const end = performance.now();
  if (!drawn.has(what)) {
    drawn.add(what);
    performance.mark("tandem:" + what + "-drawn");
  }
  performance.clearMeasures("tandem:" + what + "-refresh");
  performance.measure("tandem:" + what + "-refresh", {start: start, end: end});
  performance.clearMeasures("tandem:" + what + "-draw");
  performance.measure("tandem:" + what + "-draw", {start: drawStart, end: end});
}

// cell returns a <td> holding text, with an optional class.
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

// row appends a row of cells to the body of table id.
function row(tbody, cells, attrs) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs || {})) tr.dataset[k] = String(v);
  for (const c of cells) tr.appendChild(c);
  tbody.appendChild(tr);
}

// body returns a new, detached body for table id's rows; commit puts them
// in the table.
function body(id) {
  const tbody = document.createElement("tbody");
  tbody.dataset.table = id;
  return tbody;
}

function commit(tbody) {
  sync(document.querySelector("#" + tbody.dataset.table + " tbody"), [...tbody.children]);
}

// markupOf is el as text (its tag, attributes, children and their text),
// to tell whether two elements are the same; it reads, never writes.
const serializer = new XMLSerializer();
function markupOf(el) {
  return serializer.serializeToString(el);
}

// sync makes parent's children the elements of want, keeping each child
// that is the same (same markup) as the one wanted in its place: a refresh
// that changes nothing changes no node, so the browser has nothing to lay
// out again, and one that changes a cell replaces that row only. A kept
// row keeps its event listeners, which its markup (its data-*) decides.
const markup = new WeakMap();
function sync(parent, want) {
  const have = parent.children;
  for (let i = 0; i < want.length; i++) {
    const m = markupOf(want[i]);
    const cur = have[i];
    if (cur && markup.get(cur) === m) continue;
    markup.set(want[i], m);
    if (cur) cur.replaceWith(want[i]);
    else parent.appendChild(want[i]);
  }
  while (have.length > want.length) parent.lastElementChild.remove();
}

// ports lists the sidecar's ports it knows: none of a sidecar whose
// metadata could not be read in Kubernetes mode.
function ports(app) {
  const p = [];
  if (app.httpPort) p.push("http " + app.httpPort);
  if (app.grpcPort) p.push("grpc " + app.grpcPort);
  const extra = app.ports || {};
  for (const k of ["internal", "public", "metrics"]) {
    if (extra[k]) p.push(k + " " + extra[k]);
  }
  return p.join(", ");
}

// expiry is a cell for a certificate's expiry: the time, and how long is
// left; red when under an hour or past.
function expiry(at) {
  if (!at) return cell("");
  const t = new Date(at);
  const left = t.getTime() - Date.now();
  const h = Math.floor(Math.abs(left) / 3600000), m = Math.floor((Math.abs(left) % 3600000) / 60000);
  const c = cell(t.toLocaleString() + (left >= 0 ? " (in " : " (") + h + " h " + m + " min" + (left >= 0 ? ")" : " ago)"),
    left < 3600000 ? "failing" : "");
  c.dataset.expiry = at;
  return c;
}

function apps(data) {
  return (data.apps || []).map(a => a.appId).sort();
}

function render(data) {
  const apps = data.apps || [];
  document.getElementById("count").textContent = "(" + apps.length + ")";
  document.getElementById("registry").textContent = data.registry || data.kubernetes || "";
  document.getElementById("empty").hidden = apps.length !== 0;

  const a = body("apps");
  const c = body("components");
  const s = body("subscriptions");
  const r = body("rejected");
  const pol = body("policies");
  for (const app of apps) {
    const health = cell(app.health, app.health);
    if (app.healthError) health.title = app.healthError;
    const md = cell(app.metadata === "ok" ? "ok" : app.metadata + (app.metadataError ? ": " + app.metadataError : ""),
      app.metadata === "ok" ? "" : "muted");
    // "none": the sidecar says its app has no port; blank: unknown.
    const appCell = app.appPort ? (app.appProtocol || "http") + " " + app.appPort : (app.metadata === "ok" ? "none" : "");
    const id = cell(app.spiffeId || (app.metadata === "ok" ? "off" : ""), app.spiffeId ? "" : "muted");
    row(a, [cell(app.appId), health, cell(app.runtimeVersion), cell(app.pod ? app.namespace + "/" + app.pod : app.pid), cell(ports(app)), cell(appCell),
      id, expiry(app.certExpiry), md],
      {appId: app.appId, health: app.health, metadata: app.metadata, spiffeId: app.spiffeId || ""});
    for (const res of app.inUse || []) {
      if (res.kind !== "Configuration" && res.kind !== "Resiliency") continue;
      row(pol, [cell(app.appId), cell(res.kind), cell(res.name), cell(res.version), cell(res.source)],
        {appId: app.appId, kind: res.kind, name: res.name});
    }
    for (const comp of app.components || []) {
      row(c, [cell(app.appId), cell(comp.name), cell(comp.type), cell(comp.version)], {appId: app.appId, name: comp.name});
    }
    for (const sub of app.subscriptions || []) {
      row(s, [cell(app.appId), cell(sub.pubsubname), cell(sub.topic), cell(sub.deadLetterTopic), cell(sub.type)], {appId: app.appId});
    }
    for (const rej of app.rejected || []) {
      row(r, [cell(app.appId), cell(rej.kind), cell(rej.name), cell(rej.source), cell(rej.error, "reason"), cell(rej.since)], {appId: app.appId});
    }
  }
  for (const tb of [a, c, s, r, pol]) commit(tb);
}

const SVG = "http://www.w3.org/2000/svg";

// svg makes an SVG element with attributes.
function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// drawMap draws the apps and topics on a circle and an arrow per edge:
// apps as circles, topics (<pubsub>/<topic>) as squares. Names go in with
// textContent.
function drawMap(edges) {
  const map = [];
  const defs = svg("defs");
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse"});
  marker.appendChild(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a"}));
  defs.appendChild(marker);
  map.push(defs);
  const topics = new Set();
  for (const e of edges) {
    if (e.kind === "publish") topics.add(e.callee);
    if (e.kind === "deliver") topics.add(e.caller);
  }
  const names = [...new Set(edges.flatMap(e => [e.caller, e.callee]))].sort();
  const pos = new Map();
  const cx = 320, cy = 180, r = names.length > 1 ? 140 : 0;
  names.forEach((n, i) => {
    const a = (2 * Math.PI * i) / names.length - Math.PI / 2;
    pos.set(n, [cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  });
  for (const e of edges) {
    const [x1, y1] = pos.get(e.caller), [x2, y2] = pos.get(e.callee);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const k = 22 / len; // stop at the nodes' edge
    const line = svg("line", {
      x1: x1 + (x2 - x1) * k, y1: y1 + (y2 - y1) * k, x2: x2 - (x2 - x1) * k, y2: y2 - (y2 - y1) * k,
      class: (e.errors > 0 ? "edge failing " : "edge ") + (e.kind || "invoke"), "marker-end": "url(#arrow)",
    });
    line.dataset.kind = e.kind || "invoke";
    line.dataset.caller = e.caller;
    line.dataset.callee = e.callee;
    const title = svg("title");
    title.textContent = e.caller + " → " + e.callee + ": " + e.calls + " calls, " + e.errors + " errors, " +
      e.perSecond + "/s, p50 " + e.p50Ms + " ms, p99 " + e.p99Ms + " ms";
    line.appendChild(title);
    map.push(line);
    // The rate (and error rate) by the arrow's middle.
    const label = svg("text", {x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle",
      class: e.errors > 0 ? "rate failing" : "rate"});
    label.textContent = e.perSecond.toFixed(2) + "/s" + (e.errors > 0 ? " " + (100 * e.errorRate).toFixed(0) + " % err" : "");
    map.push(label);
  }
  for (const n of names) {
    const [x, y] = pos.get(n);
    const g = svg("g");
    if (topics.has(n)) {
      g.dataset.topic = n;
      g.appendChild(svg("rect", {x: x - 16, y: y - 16, width: 32, height: 32, class: "node topic"}));
    } else {
      g.dataset.app = n;
      g.appendChild(svg("circle", {cx: x, cy: y, r: 20, class: "node"}));
    }
    const label = svg("text", {x: x, y: y + 34, "text-anchor": "middle"});
    label.textContent = n;
    g.appendChild(label);
    map.push(g);
  }
  sync(document.getElementById("map"), map);
}

function renderMap(m) {
  const edges = m.edges || [];
  const tb = body("edges");
  for (const e of edges) {
    const pct = (100 * e.errorRate).toFixed(1) + " %";
    const rate = cell(e.perSecond.toFixed(3));
    if (e.seconds) rate.title = "over the last " + e.seconds + " s: the sidecar was read for less than the window";
    row(tb, [cell(e.kind || "invoke"), cell(e.caller), cell(e.callee), cell(e.calls), rate,
      cell(pct, e.errors > 0 ? "failing" : ""), cell(e.p50Ms), cell(e.p99Ms)],
      {kind: e.kind || "invoke", caller: e.caller, callee: e.callee, calls: e.calls, errors: e.errors});
  }
  commit(tb);
  drawMap(edges);
  let note;
  if (m.source === "metrics") {
    note = "From the metrics of " + m.sidecars + " sidecars over the last " + m.window +
      ": every call counted; p50 and p99 estimated from the latency histograms' buckets.";
    for (const u of m.unread || []) note += " Not read: " + u.appId + (u.pod ? " (pod " + u.pod + "): " : " (pid " + u.pid + "): ") + u.error + ".";
  } else {
    note = "From " + m.spans + " sampled client spans in the last " + m.window + " (" + m.source + ")" +
      (m.capped ? "; more traces than were read: counts are a lower bound" : "") + ".";
  }
  document.getElementById("map-note").textContent = note;
}

// refreshMap redraws the service map every 2 s, on a loop of its own so
// that a slow trace store does not hold up the apps.
async function refreshMap() {
  const note = document.getElementById("map-note");
  try {
    await loadMap(note);
  } catch (e) {
    note.textContent = "The service map is not available: " + e.message;
  }
  setTimeout(refreshMap, REFRESH_MS);
}

// Each view is drawn from the answer to its latest request only: an answer
// to an earlier one (a refresh sent before a picker changed) that comes back
// later is dropped, not drawn over the newer.
const asked = {};
function ask(view) { return (asked[view] = (asked[view] || 0) + 1); }
function stale(view, n) { return asked[view] !== n; }

// loadMap draws the map once, from the source picked.
async function loadMap(note) {
  const n = ask("map");
  const start = performance.now();
  const q = new URLSearchParams();
  q.set("window", document.getElementById("window").value);
  q.set("source", document.getElementById("map-source").value);
  const resp = await fetch("api/map?" + q.toString(), {cache: "no-store"});
  if (stale("map", n)) return;
  if (!resp.ok) {
    commit(body("edges"));
    drawMap([]);
    note.textContent = "The service map is not available: " + (await resp.text());
    return;
  }
  const m = await resp.json();
  if (stale("map", n)) return;
  const drawStart = performance.now();
  renderMap(m);
  timed("map", start, drawStart);
}

let lastApps = "";

async function refresh() {
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  try {
    const start = performance.now();
    const resp = await fetch("api/apps", {cache: "no-store"});
    if (!resp.ok) throw new Error("GET /api/apps answered " + resp.status + ": " + (await resp.text()));
    const data = await resp.json();
    const drawStart = performance.now();
    // An answer the same as the last drawn (but its time), with the same
    // minutes left on each certificate, is not drawn again.
    const key = JSON.stringify([data.registry, data.apps]) +
      (data.apps || []).map(a => a.certExpiry ? Math.floor((Date.parse(a.certExpiry) - Date.now()) / 60000) : "").join();
    if (key !== lastApps) {
      render(data);
      setApps([...new Set(apps(data))]);
      lastApps = key;
    }
    error.textContent = "";
    status.textContent = "updated " + new Date().toLocaleTimeString();
    timed("apps", start, drawStart);
  } catch (e) {
    error.textContent = "The dashboard's API does not answer: " + e.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

// The traces: a list of the picked app's latest traces, refreshed every
// 2 s, and the waterfall of the trace clicked.
let pickedTrace = "";

function traceQuery() {
  const q = new URLSearchParams();
  q.set("app", document.getElementById("trace-app").value);
  q.set("status", document.getElementById("trace-status").value);
  const min = document.getElementById("trace-min").value.trim();
  if (min) q.set("minDuration", min);
  q.set("window", document.getElementById("window").value);
  return q.toString();
}

// setApps keeps the app picker's options to the apps listed.
function setApps(ids) {
  const sel = document.getElementById("trace-app");
  const cur = [...sel.options].map(o => o.value).join("\n");
  if (cur === ids.join("\n")) return;
  const keep = sel.value;
  sel.replaceChildren();
  for (const id of ids) {
    const o = document.createElement("option");
    o.value = id;
    o.textContent = id;
    sel.appendChild(o);
  }
  if (ids.includes(keep)) sel.value = keep;
  // The first app listed: its traces now, not at the list's next turn.
  if (!keep && sel.value) loadTraces(document.getElementById("traces-note")).catch(() => {});
}

async function refreshTraces() {
  const note = document.getElementById("traces-note");
  let on = true;
  try {
    on = await loadTraces(note);
  } catch (e) {
    note.textContent = "The traces are not available: " + e.message;
  }
  if (on) setTimeout(refreshTraces, REFRESH_MS);
}

// loadTraces lists the traces once; false when there is no trace store.
async function loadTraces(note) {
  if (!document.getElementById("trace-app").value) return true;
  const n = ask("traces");
  const start = performance.now();
  const resp = await fetch("api/traces?" + traceQuery(), {cache: "no-store"});
  if (stale("traces", n)) return true;
  if (resp.status === 404) {
    document.getElementById("traces-section").hidden = true;
    return false;
  }
  document.getElementById("traces-section").hidden = false;
  if (!resp.ok) {
    note.textContent = "The traces are not available: " + (await resp.text());
    return true;
  }
  const list = await resp.json();
  if (stale("traces", n)) return true;
  const drawStart = performance.now();
  note.textContent = list.length + " traces in the last " + document.getElementById("window").value + ", newest first; click one for its spans.";
  const tb = body("traces");
  for (const tr of list) {
    row(tb, [cell(tr.traceId), cell(tr.root), cell(new Date(tr.start).toLocaleTimeString()), cell(tr.durationMs),
      cell(tr.spans), cell(tr.errors, tr.errors > 0 ? "failing" : ""), cell((tr.services || []).join(", "))],
      {traceId: tr.traceId, errors: tr.errors});
    const tRow = tb.lastChild;
    if (tr.traceId === pickedTrace) tRow.className = "picked";
    tRow.addEventListener("click", () => showTrace(tr.traceId));
  }
  commit(tb);
  timed("traces", start, drawStart);
  return true;
}

// showTrace draws trace id as a waterfall: a row a span, indented under
// its parent, a bar for its time; a click on a row shows its tags.
async function showTrace(id) {
  pickedTrace = id;
  for (const r of document.querySelectorAll("#traces tbody tr")) r.className = r.dataset.traceId === id ? "picked" : "";
  const resp = await fetch("api/traces/" + encodeURIComponent(id), {cache: "no-store"});
  if (pickedTrace !== id) return;
  const wf = document.getElementById("waterfall");
  const rows = document.getElementById("waterfall-rows");
  document.getElementById("waterfall-id").textContent = id;
  rows.replaceChildren();
  wf.hidden = false;
  if (!resp.ok) {
    rows.textContent = "The trace is not available: " + (await resp.text());
    return;
  }
  const spans = await resp.json();
  if (pickedTrace !== id) return;
  const total = Math.max(...spans.map(s => s.offsetMs + s.durationMs), 0.001);
  const depth = new Map();
  const byId = new Map(spans.map(s => [s.spanId, s]));
  const depthOf = (s, n = 0) => {
    if (depth.has(s.spanId)) return depth.get(s.spanId);
    const p = byId.get(s.parentId);
    const d = p && n < 64 ? depthOf(p, n + 1) + 1 : 0;
    depth.set(s.spanId, d);
    return d;
  };
  for (const s of spans) {
    const r = document.createElement("div");
    r.className = "span-row" + (s.error ? " error" : "");
    r.dataset.spanId = s.spanId;
    r.dataset.error = String(s.error);
    const name = document.createElement("div");
    name.className = "span-name";
    name.textContent = s.service + " " + s.operation + (s.kind ? " (" + s.kind + ")" : "") + " " + s.durationMs + " ms";
    name.style.paddingLeft = depthOf(s) + "em";
    const track = document.createElement("div");
    track.className = "span-track";
    const bar = document.createElement("div");
    bar.className = "span-bar";
    bar.style.left = (100 * s.offsetMs / total) + "%";
    bar.style.width = (100 * s.durationMs / total) + "%";
    track.appendChild(bar);
    r.append(name, track);
    const tags = document.createElement("table");
    tags.className = "span-tags";
    tags.hidden = true;
    const tb = document.createElement("tbody");
    for (const t of s.tags || []) {
      const tr = document.createElement("tr");
      tr.append(cell(t.key), cell(t.value));
      tb.appendChild(tr);
    }
    tags.appendChild(tb);
    r.appendChild(tags);
    r.addEventListener("click", () => { tags.hidden = !tags.hidden; });
    rows.appendChild(r);
  }
}

for (const id of ["trace-app", "trace-status", "trace-min"]) {
  document.getElementById(id).addEventListener("change", () => loadTraces(document.getElementById("traces-note")).catch(() => {}));
}

refresh();
refreshMap();
refreshTraces();
for (const id of ["window", "map-source"]) {
  document.getElementById(id).addEventListener("change", () => loadMap(document.getElementById("map-note")).catch(() => {}));
}
