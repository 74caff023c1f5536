// The traces page: reads Jaeger's query API (passed through at /api) every
// two seconds, lists recent traces, and draws the one picked as a waterfall.
// Everything the collector sends is written with textContent, never as HTML.
"use strict";

const palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#ff9da7", "#9c755f", "#8cd17d"];
const $ = (id) => document.getElementById(id);
const state = {
  services: [],
  traces: new Map(), // trace id -> model
  selected: decodeURIComponent(location.hash.slice(1)) || "",
  expanded: new Set(), // span ids whose attributes are shown
  drawn: "", // what the waterfall shows now: trace id and span count
  busy: false,
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function color(service) {
  let i = state.services.indexOf(service);
  if (i < 0) {
    i = 0;
    for (const c of service) i = (i * 31 + c.charCodeAt(0)) >>> 0;
  }
  return palette[i % palette.length];
}

// Durations come in microseconds.
function duration(us) {
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(2) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function clock(us) {
  const d = new Date(us / 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function tag(span, key) {
  const t = span.tags.find((t) => t.key === key);
  return t ? String(t.value) : "";
}

// model turns one trace of the query API into spans in tree order, each with
// its depth, service and kind.
function model(t) {
  const procs = t.processes || {};
  const spans = (t.spans || []).map((s) => {
    const refs = s.references || [];
    const parent = (refs.find((r) => r.refType === "CHILD_OF") || refs[0] || {}).spanID || "";
    return {
      id: s.spanID, name: s.operationName, start: s.startTime, dur: s.duration, parent,
      service: (procs[s.processID] || {}).serviceName || "unknown",
      tags: s.tags || [], logs: s.logs || [], warnings: s.warnings || [], children: [],
    };
  });
  const byID = new Map(spans.map((s) => [s.id, s]));
  const roots = [];
  for (const s of spans) {
    s.kind = tag(s, "span.kind");
    s.error = tag(s, "error") === "true" || tag(s, "otel.status_code") === "ERROR";
    const p = byID.get(s.parent);
    if (p) p.children.push(s);
    else roots.push(s);
  }
  const byStart = (a, b) => a.start - b.start;
  const order = [];
  const walk = (s, depth) => {
    s.depth = depth;
    order.push(s);
    s.children.sort(byStart).forEach((c) => walk(c, depth + 1));
  };
  roots.sort(byStart).forEach((r) => walk(r, 0));
  const start = Math.min(...spans.map((s) => s.start));
  const end = Math.max(...spans.map((s) => s.start + s.dur));
  const services = [...new Set(order.map((s) => s.service))];
  return { id: t.traceID, spans: order, root: order[0], start, end, services, errors: spans.filter((s) => s.error).length };
}

async function getJSON(path) {
  const resp = await fetch(path, { cache: "no-store" });
  const text = await resp.text();
  if (!resp.ok) throw new Error(text.trim() || path + ": " + resp.status);
  const body = JSON.parse(text);
  if (body.errors && body.errors.length) throw new Error(body.errors.map((e) => e.msg).join("; "));
  return body.data || [];
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    state.services = (await getJSON("api/services")).sort();
    fillServices();
    const chosen = $("service").value ? [$("service").value] : state.services;
    const lists = await Promise.all(chosen.map((s) => getJSON("api/traces?limit=20&service=" + encodeURIComponent(s))));
    const traces = new Map();
    for (const t of lists.flat()) {
      if (!t.spans || !t.spans.length) continue;
      const m = model(t);
      const had = traces.get(m.id);
      if (!had || had.spans.length < m.spans.length) traces.set(m.id, m);
    }
    if (state.selected && !traces.has(state.selected)) {
      const [t] = await getJSON("api/traces/" + encodeURIComponent(state.selected)).catch(() => []);
      if (t && t.spans && t.spans.length) traces.set(t.traceID, model(t));
    }
    state.traces = traces;
    drawList();
    drawTrace();
    setStatus("updated " + new Date().toLocaleTimeString([], { hour12: false }), false);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    state.busy = false;
  }
}

function setStatus(text, bad) {
  $("status").textContent = text;
  $("status").classList.toggle("bad", bad);
}

function fillServices() {
  const sel = $("service");
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (have.join() === state.services.join()) return;
  const keep = sel.value;
  sel.length = 1;
  for (const s of state.services) sel.add(new Option(s, s));
  sel.value = state.services.includes(keep) ? keep : "";
}

function serviceChip(service) {
  const c = el("span", "service", service);
  c.style.setProperty("--c", color(service));
  return c;
}

function drawList() {
  const rows = [...state.traces.values()].sort((a, b) => b.start - a.start).slice(0, 50);
  const body = $("traces");
  body.replaceChildren();
  for (const t of rows) {
    const tr = el("tr", "trace");
    tr.dataset.traceId = t.id;
    tr.classList.toggle("selected", t.id === state.selected);
    tr.classList.toggle("failed", t.errors > 0);
    tr.append(el("td", "started", clock(t.start)));
    const root = el("td", "root");
    root.append(serviceChip(t.root.service), el("span", "root-name", t.root.name));
    tr.append(root);
    const svc = el("td", "services");
    t.services.forEach((s) => svc.append(serviceChip(s)));
    tr.append(svc, el("td", "num span-count", String(t.spans.length)), el("td", "num", duration(t.end - t.start)));
    tr.addEventListener("click", () => select(t.id));
    body.append(tr);
  }
  $("empty").hidden = rows.length > 0;
}

function select(id) {
  state.selected = id;
  state.expanded.clear();
  state.drawn = "";
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  drawList();
  drawTrace();
}

function drawTrace() {
  const t = state.traces.get(state.selected);
  $("trace").hidden = !t;
  if (!t) return;
  const key = t.id + "/" + t.spans.length;
  if (key === state.drawn) return;
  state.drawn = key;
  const total = Math.max(t.end - t.start, 1);
  $("trace-title").replaceChildren(serviceChip(t.root.service), el("span", "", " " + t.root.name));
  $("trace-meta").textContent = `trace ${t.id} · started ${clock(t.start)} · ${duration(t.end - t.start)} · ` +
    `${t.spans.length} spans · ${t.services.length} services` + (t.errors ? ` · ${t.errors} failed` : "");

  const wf = $("waterfall");
  wf.replaceChildren();
  const axis = el("div", "row axis");
  axis.append(el("div", "label", "service · span"));
  const ticks = el("div", "timeline");
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const tick = el("span", "tick", duration(Math.round(total * f)));
    tick.style.left = f * 100 + "%";
    ticks.append(tick);
  }
  axis.append(ticks);
  wf.append(axis);

  for (const s of t.spans) {
    const row = el("div", "row span");
    Object.assign(row.dataset, { spanId: s.id, depth: s.depth, service: s.service, kind: s.kind });
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", s.depth + 1);
    row.classList.toggle("failed", s.error);
    const label = el("div", "label");
    label.style.paddingLeft = 8 + s.depth * 18 + "px";
    label.append(serviceChip(s.service), el("span", "span-name", s.name));
    if (s.kind) label.append(el("span", "kind", s.kind));
    const line = el("div", "timeline");
    const bar = el("div", "bar");
    bar.style.left = ((s.start - t.start) / total) * 100 + "%";
    bar.style.width = Math.max((s.dur / total) * 100, 0.3) + "%";
    bar.style.background = color(s.service);
    const dur = el("span", "span-duration", duration(s.dur));
    dur.style.left = ((s.start - t.start) / total) * 100 + "%";
    line.append(bar, dur);
    row.append(label, line);
    const attrs = details(s, t);
    attrs.hidden = !state.expanded.has(s.id);
    row.setAttribute("aria-expanded", String(!attrs.hidden));
    row.addEventListener("click", () => {
      attrs.hidden = !attrs.hidden;
      row.setAttribute("aria-expanded", String(!attrs.hidden));
      if (attrs.hidden) state.expanded.delete(s.id);
      else state.expanded.add(s.id);
    });
    wf.append(row, attrs);
  }
}

// details is the table of a span's fields and attributes, shown under its row.
function details(s, t) {
  const box = el("div", "attrs");
  box.dataset.spanId = s.id;
  box.style.marginLeft = 24 + s.depth * 18 + "px";
  const table = el("table");
  const add = (k, v, cls) => {
    const tr = el("tr", cls);
    tr.append(el("th", "", k), el("td", "", v));
    table.append(tr);
  };
  add("service", s.service, "field");
  add("span", s.id + (s.kind ? " (" + s.kind + ")" : ""), "field");
  if (s.parent) add("parent", s.parent + (t.spans.some((p) => p.id === s.parent) ? "" : " (not in this trace)"), "field");
  add("starts", "+" + duration(s.start - t.start) + " at " + clock(s.start), "field");
  add("duration", duration(s.dur), "field");
  for (const a of [...s.tags].sort((a, b) => a.key.localeCompare(b.key))) {
    if (a.key !== "span.kind") add(a.key, String(a.value), "attr");
  }
  for (const l of s.logs) {
    add("event +" + duration(l.timestamp - t.start), (l.fields || []).map((f) => f.key + "=" + f.value).join(" "), "event");
  }
  for (const w of s.warnings) add("warning", w, "warning");
  box.append(table);
  return box;
}

$("service").addEventListener("change", () => { state.drawn = ""; refresh(); });
$("refresh").addEventListener("click", refresh);
window.addEventListener("hashchange", () => {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id !== state.selected) select(id);
});
setInterval(() => { if ($("live").checked) refresh(); }, 2000);
refresh();
