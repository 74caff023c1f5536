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
