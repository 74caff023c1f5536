// The dashboard's page: it reads GET /api/apps every 2 s and redraws the
// tables. Every value is put into the page with textContent, never as HTML.
"use strict";

const REFRESH_MS = 2000;

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

function body(id) {
  const tbody = document.querySelector("#" + id + " tbody");
  tbody.replaceChildren();
  return tbody;
}

function ports(app) {
  const p = ["http " + app.httpPort];
  if (app.grpcPort) p.push("grpc " + app.grpcPort);
  const extra = app.ports || {};
  for (const k of ["internal", "public", "metrics"]) {
    if (extra[k]) p.push(k + " " + extra[k]);
  }
  return p.join(", ");
}

function render(data) {
  const apps = data.apps || [];
  document.getElementById("count").textContent = "(" + apps.length + ")";
  document.getElementById("registry").textContent = data.registry || "";
  document.getElementById("empty").hidden = apps.length !== 0;

  const a = body("apps");
  const c = body("components");
  const s = body("subscriptions");
  const r = body("rejected");
  for (const app of apps) {
    const health = cell(app.health, app.health);
    if (app.healthError) health.title = app.healthError;
    const md = cell(app.metadata === "ok" ? "ok" : app.metadata + (app.metadataError ? ": " + app.metadataError : ""),
      app.metadata === "ok" ? "" : "muted");
    const appCell = app.appPort ? (app.appProtocol || "http") + " " + app.appPort : "none";
    row(a, [cell(app.appId), health, cell(app.runtimeVersion), cell(app.pid), cell(ports(app)), cell(appCell), md],
      {appId: app.appId, health: app.health, metadata: app.metadata});
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
}

const SVG = "http://www.w3.org/2000/svg";

// svg makes an SVG element with attributes.
function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// drawMap draws the apps on a circle and an arrow per edge. Names go in
// with textContent.
function drawMap(edges) {
  const map = document.getElementById("map");
  map.replaceChildren();
  const defs = svg("defs");
  const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse"});
  marker.appendChild(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a"}));
  defs.appendChild(marker);
  map.appendChild(defs);
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
      class: e.errors > 0 ? "edge failing" : "edge", "marker-end": "url(#arrow)",
    });
    line.dataset.caller = e.caller;
    line.dataset.callee = e.callee;
    const title = svg("title");
    title.textContent = e.caller + " → " + e.callee + ": " + e.calls + " calls, " + e.errors + " errors";
    line.appendChild(title);
    map.appendChild(line);
  }
  for (const n of names) {
    const [x, y] = pos.get(n);
    const g = svg("g");
    g.dataset.app = n;
    g.appendChild(svg("circle", {cx: x, cy: y, r: 20, class: "node"}));
    const label = svg("text", {x: x, y: y + 34, "text-anchor": "middle"});
    label.textContent = n;
    g.appendChild(label);
    map.appendChild(g);
  }
}

function renderMap(m) {
  const edges = m.edges || [];
  const tb = body("edges");
  for (const e of edges) {
    const pct = (100 * e.errorRate).toFixed(1) + " %";
    row(tb, [cell(e.caller), cell(e.callee), cell(e.calls), cell(e.perSecond.toFixed(3)),
      cell(pct, e.errors > 0 ? "failing" : ""), cell(e.p50Ms), cell(e.p99Ms)],
      {caller: e.caller, callee: e.callee, calls: e.calls, errors: e.errors});
  }
  drawMap(edges);
  document.getElementById("map-note").textContent =
    "From " + m.spans + " sampled client spans in the last " + m.window + " (" + m.source + ")" +
    (m.capped ? "; more traces than were read: counts are a lower bound" : "") + ".";
}

// refreshMap redraws the service map every 2 s, on a loop of its own so
// that a slow trace store does not hold up the apps.
async function refreshMap() {
  const note = document.getElementById("map-note");
  let on = true;
  try {
    on = await loadMap(note);
  } catch (e) {
    note.textContent = "The service map is not available: " + e.message;
  }
  if (on) setTimeout(refreshMap, REFRESH_MS); // off: started without a trace store
}

// loadMap draws the map once; false when the dashboard has no trace store.
async function loadMap(note) {
  const win = document.getElementById("window").value;
  const resp = await fetch("api/map?window=" + encodeURIComponent(win), {cache: "no-store"});
  if (resp.status === 404) {
    document.getElementById("map-section").hidden = true;
    return false;
  }
  document.getElementById("map-section").hidden = false;
  if (!resp.ok) {
    note.textContent = "The service map is not available: " + (await resp.text());
    return true;
  }
  renderMap(await resp.json());
  return true;
}

async function refresh() {
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  try {
    const resp = await fetch("api/apps", {cache: "no-store"});
    if (!resp.ok) throw new Error("GET /api/apps answered " + resp.status + ": " + (await resp.text()));
    const data = await resp.json();
    render(data);
    error.textContent = "";
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    error.textContent = "The dashboard's API does not answer: " + e.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
refreshMap();
document.getElementById("window").addEventListener("change", () => loadMap(document.getElementById("map-note")).catch(() => {}));
