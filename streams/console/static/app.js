// The console's page: the live view (a server-sent events stream of rows), filters kept in
// the URL, an opened event's three forms with their differences, the health strip, and the
// device and user views. No dependencies.
"use strict";

const FILTERS = ["userId", "anonymousId", "device", "type", "event", "code", "q"];
const MAX_ROWS = 500;
const rows = new Map(); // id -> row
let paused = false;
let pending = [];
let profile = null; // {kind, key} on /devices/... and /users/...

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function currentQuery() {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const name of FILTERS) if (params.get(name)) query.set(name, params.get(name));
  if (profile) query.set(profile.kind === "device" ? "device" : "userId", profile.key);
  return query;
}

function time(ms) {
  const date = new Date(ms);
  return date.toISOString().substring(11, 23);
}

function renderRow(row) {
  const tr = el("tr", {"data-id": row.id, class: "row"});
  const link = (kind, value) => value == null ? "" :
    el("a", {href: `/${kind}/${encodeURIComponent(value)}`, text: String(value)});
  tr.append(
    el("td", {text: time(row.time)}),
    el("td", {text: row.type || "?"}),
    el("td", {text: row.event || ""}),
    el("td", {}, link("devices", row.device)),
    el("td", {text: row.anonymousId || ""}),
    el("td", {}, link("users", row.userId)),
    el("td", {class: "badges"}, ...row.badges.map(
      (b) => el("span", {class: `badge ${b.kind}`, text: b.label}))),
  );
  tr.addEventListener("click", (event) => {
    if (event.target.tagName !== "A") openEvent(row.id);
  });
  return tr;
}

function redraw() {
  const body = document.querySelector("#events tbody");
  const sorted = [...rows.values()].sort((a, b) => b.seq - a.seq).slice(0, MAX_ROWS);
  body.replaceChildren(...sorted.map(renderRow));
  document.getElementById("status").textContent = `${sorted.length} events`;
}

function apply(update) {
  for (const row of update) rows.set(row.id, row);
  while (rows.size > MAX_ROWS * 2) {
    const oldest = [...rows.values()].sort((a, b) => a.seq - b.seq)[0];
    rows.delete(oldest.id);
  }
  redraw();
}

function stream() {
  const source = new EventSource(`/api/stream?${currentQuery()}`);
  source.addEventListener("snapshot", (message) => {
    rows.clear();
    apply(JSON.parse(message.data));
  });
  source.addEventListener("rows", (message) => {
    const update = JSON.parse(message.data);
    if (!update.length) return;
    if (paused) pending.push(...update);
    else apply(update);
  });
}

// one JSON document as nested lines, each naming its path, marked by the differences
function renderJson(value, marks, path, depth) {
  if (value === null || typeof value !== "object") {
    return el("span", {class: `v ${typeof value}`, text: JSON.stringify(value)});
  }
  const list = el("div", {class: "obj"});
  const names = Array.isArray(value) ? value.map((_, i) => String(i)) : Object.keys(value);
  for (const name of names) {
    const where = path ? `${path}.${name}` : name;
    const line = el("div", {class: `line ${marks.get(where) || ""}`, "data-path": where});
    line.style.paddingLeft = `${depth}em`;
    const child = value[name];
    line.append(el("span", {class: "k", text: `${name}: `}));
    if (child !== null && typeof child === "object") {
      line.append(el("span", {class: "brace", text: Array.isArray(child) ? "[" : "{"}));
      list.append(line, renderJson(child, marks, where, depth + 1));
    } else {
      line.append(renderJson(child, marks, where, depth + 1));
      list.append(line);
    }
  }
  return list;
}

function pane(id, document_, changes, removedFrom) {
  const node = document.getElementById(id);
  node.replaceChildren();
  if (document_ == null) {
    node.append(el("p", {class: "none", text: "none"}));
    return;
  }
  const marks = new Map((changes || []).filter((c) => c.op !== "removed").map((c) => [c.path, c.op]));
  const removed = (changes || []).filter((c) => c.op === "removed");
  if (removed.length) {
    const box = el("div", {class: "removed-list"});
    for (const change of removed) {
      box.append(el("div", {class: "line removed", "data-path": change.path,
        text: `${change.path}: ${JSON.stringify(change.before)}`}));
    }
    node.append(box);
  }
  node.append(typeof document_ === "string" ? el("pre", {text: document_})
    : renderJson(document_, marks, "", 0));
}

async function openEvent(id) {
  const response = await fetch(`/api/events/${id}`);
  if (!response.ok) return;
  const event = await response.json();
  const detail = document.getElementById("detail");
  detail.hidden = false;
  document.getElementById("detail-title").textContent =
    `${event.type || "?"} ${event.event || ""} · ${event.id}`;
  const dead = document.getElementById("deadletter");
  if (event.deadletter) {
    const error = event.deadletter.error || {};
    dead.hidden = false;
    dead.replaceChildren(
      el("p", {}, el("span", {class: "badge error", text: error.code || "?"}), ` ${error.message || ""}`),
      el("p", {text: "Original payload:"}),
      el("pre", {class: "payload", text: String(event.deadletter.payload)}),
      el("p", {}, "Requeue after a fix: ",
        el("code", {text: `enricher deadletter requeue --code ${error.code}`})),
    );
  } else {
    dead.hidden = true;
  }
  pane("pane-raw", event.raw, [], null);
  pane("pane-warehouse", event.warehouse, event.changes.warehouse);
  pane("pane-destinations", event.destinations, event.changes.destinations);
  detail.scrollIntoView({block: "nearest"});
}

function chart(id, values) {
  const svg = document.getElementById(id);
  const top = Math.max(1, ...values);
  const step = 120 / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(23 - (v / top) * 22).toFixed(1)}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  svg.replaceChildren(line);
}

async function health() {
  try {
    const response = await fetch("/api/health");
    if (response.ok) {
      const h = await response.json();
      document.getElementById("rate-in").textContent = h.inPerSecond.toFixed(1);
      document.getElementById("rate-out").textContent = h.outPerSecond.toFixed(1);
      document.getElementById("rate-dead").textContent = h.deadLettersPerMinute.toFixed(1);
      const lag = Object.entries(h.lag).map(([p, n]) => `${p}:${n}`).join(" ");
      document.getElementById("lag").textContent = lag || "-";
      chart("chart-in", h.series.slice(-120).map((s) => s.in));
      chart("chart-out", h.series.slice(-120).map((s) => s.out));
    }
  } finally {
    setTimeout(health, 2000);
  }
}

async function showProfile() {
  const section = document.getElementById("profile");
  section.hidden = false;
  document.getElementById("profile-title").textContent =
    `${profile.kind === "device" ? "Device" : "User"} ${profile.key}`;
  const kind = profile.kind === "device" ? "devices" : "users";
  const response = await fetch(`/api/${kind}/${encodeURIComponent(profile.key)}`);
  const found = await response.json();
  document.getElementById("profile-lookup").textContent =
    found.lookup ? JSON.stringify(found.lookup, null, 2) : "not found (no stored state)";
}

function setUp() {
  const match = location.pathname.match(/^\/(devices|users)\/(.+)$/);
  if (match) profile = {kind: match[1] === "devices" ? "device" : "user", key: decodeURIComponent(match[2])};
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) if (form.elements[name]) form.elements[name].value = params.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of FILTERS) if (form.elements[name].value) query.set(name, form.elements[name].value);
    location.search = query.toString();
  });
  document.getElementById("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.textContent = paused ? "Resume" : "Pause";
    if (!paused && pending.length) { apply(pending); pending = []; }
  });
  document.getElementById("close").addEventListener("click", () => {
    document.getElementById("detail").hidden = true;
  });
  if (profile) showProfile();
  stream();
  health();
}

setUp();
