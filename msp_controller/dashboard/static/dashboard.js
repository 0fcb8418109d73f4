// The MSP dashboard: the homenet list (one page at a time, filtered by the controller) and one
// homenet in full, both kept live by server-sent events from /dashboard/events.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"];
const state = { me: null, page: 1, pages: 1, stream: null, homenet: null, history: [] };
const $ = (id) => document.getElementById(id);

function show(section) {
  for (const id of ["login", "list", "detail"]) $(id).hidden = id !== section;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) { loggedOut(); throw new Error("not logged in"); }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function badge(status) {
  return el("span", { class: "badge " + status }, status);
}

// --- login ---------------------------------------------------------------------------------

function loggedOut() {
  state.me = null;
  closeStream();
  $("who").textContent = "";
  $("logout").hidden = true;
  show("login");
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const response = await fetch("login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  const body = await response.json();
  $("token").value = "";
  if (!response.ok) { $("login-error").textContent = body.error ? body.error.message : "login failed"; return; }
  started(body);
}

async function logout() {
  await fetch("logout", { method: "POST", credentials: "same-origin" });
  loggedOut();
}

function started(me) {
  state.me = me;
  $("who").textContent = me.name + " (" + me.role + ")";
  $("logout").hidden = false;
  route();
}

// --- the live stream -------------------------------------------------------------------------

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
  setLive(false);
}

function setLive(on) {
  $("live").textContent = on ? "live" : "offline";
  $("live").className = "badge " + (on ? "ok" : "unknown");
}

function openStream(query, handlers) {
  closeStream();
  const stream = new EventSource("events?" + new URLSearchParams(query).toString());
  stream.onopen = () => setLive(true);
  stream.onerror = () => setLive(false);  // EventSource reconnects by itself
  for (const [kind, handle] of Object.entries(handlers)) {
    stream.addEventListener(kind, (event) => handle(JSON.parse(event.data)));
  }
  stream.addEventListener("resync", () => route());
  state.stream = stream;
}

// --- the list --------------------------------------------------------------------------------

let searchTimer = null;

async function loadList() {
  const query = { q: $("search").value, status: $("status").value, page: state.page, per_page: 50 };
  const found = await api("api/homenets?" + new URLSearchParams(query).toString());
  state.page = found.page;
  state.pages = found.pages;
  const rows = $("homenets");
  rows.replaceChildren(...found.homenets.map(listRow));
  $("page").textContent = "page " + found.page + " of " + found.pages + " (" + found.total + " homenets)";
  $("prev").disabled = found.page <= 1;
  $("next").disabled = found.page >= found.pages;
  $("counts").textContent = Object.entries(found.counts).map(([k, v]) => v + " " + k).join(", ");
  openStream({ homenets: found.homenets.map((h) => h.name).join(",") }, { summary: updateRow });
}

function listRow(homenet) {
  const row = el("tr", { class: "row", "data-homenet": homenet.name });
  fillRow(row, homenet);
  row.addEventListener("click", () => { location.hash = "#/homenet/" + encodeURIComponent(homenet.name); });
  return row;
}

function fillRow(row, homenet) {
  const status = el("td", { "data-field": "status" });
  status.append(badge(homenet.status));
  row.replaceChildren(el("td", {}, homenet.name), status,
    el("td", { "data-field": "egress" }, homenet.egress || "no path"),
    el("td", { "data-field": "ingress" }, homenet.ingress || "no path"),
    el("td", {}, homenet.paths_up + " / " + homenet.paths));
}

function updateRow(homenet) {
  const row = document.querySelector('tr[data-homenet="' + CSS.escape(homenet.name) + '"]');
  if (row) fillRow(row, homenet);
}

// --- one homenet -----------------------------------------------------------------------------

function loadHomenet(name) {
  state.homenet = null;
  state.history = [];
  $("homenet-name").textContent = name;
  openStream({ detail: name }, {
    homenet: (view) => {
      if (view.history) state.history = view.history;
      drawHomenet(view);
    },
    stats: (sample) => {
      state.history.push(sample);
      if (state.history.length > 120) state.history.shift();
      if (state.homenet) {
        for (const p of state.homenet.paths) Object.assign(p, sample.paths[p.path] || {});
        drawPicture(state.homenet);
      }
      drawGraphs();
    },
  });
}

function drawHomenet(view) {
  state.homenet = view;
  $("homenet-name").textContent = view.name;
  $("homenet-status").textContent = view.status;
  $("homenet-status").className = "badge " + view.status;
  $("homenet-facts").textContent = "prefixes " + view.prefixes.join(", ") + "; announced at " +
    (view.announced_at.length ? view.announced_at.join(", ") : "no edge");
  drawPicture(view);
  $("classes").replaceChildren(...view.classes.map((c) => {
    const row = el("tr", { "data-class": c.name });
    row.append(el("td", {}, c.name + " (" + c.egress_mode + ")"));
    for (const direction of ["egress", "ingress"]) {
      const cell = el("td", { "data-direction": direction, "data-state": c[direction + "_state"] || "none" },
        (c[direction] || "no path") + (c[direction + "_state"] ? " (" + c[direction + "_state"] + ")" : ""));
      row.append(cell);
    }
    return row;
  }));
  $("changes").replaceChildren(...view.changes.map((c) => el("li", {},
    new Date(c.when * 1000).toLocaleTimeString() + "  " + c.class + " " + c.direction + ": " +
    (c.old || "no path") + " \u2192 " + (c.new || "no path"))));
  if (!view.changes.length) $("changes").append(el("li", { class: "hint" }, "none since the controller started"));
  drawGraphs();
}

// The boxes: the MSPMB on the left, an ISP per uplink, the MSP's edges on the right; one line
// per tunnel path (ISP to edge), coloured by its state, thick where a class uses it, with the
// classes that use it in each direction (up arrow: egress, down arrow: ingress).
function drawPicture(view) {
  const svg = $("picture");
  const uplinks = view.uplinks.map((u) => u.name);
  const edges = view.edges;
  const rows = Math.max(uplinks.length, edges.length);
  const height = 60 + rows * 110;
  const ispX = 260, edgeX = 630;
  svg.setAttribute("viewBox", "0 0 800 " + height);
  svg.replaceChildren();
  const rowY = (i, n) => 40 + (i + 0.5) * (height - 60) / n;
  const ispY = Object.fromEntries(uplinks.map((u, i) => [u, rowY(i, uplinks.length)]));
  const edgeY = Object.fromEntries(edges.map((e, i) => [e, rowY(i, edges.length)]));
  const homeY = (height + 20) / 2;
  const along = (p, t) => [ispX + 42 + t * (edgeX - ispX - 42), ispY[p.isp] + t * (edgeY[p.edge] - ispY[p.isp])];
  const uses = {};
  for (const c of view.classes) {
    for (const [direction, arrow] of [["egress", "\u2191"], ["ingress", "\u2193"]]) {
      for (const path of (c[direction] || "").split(" + ").filter(Boolean)) {
        (uses[path] = uses[path] || []).push(arrow + c.name);
      }
    }
  }
  svg.append(el("svg:text", { x: 20, y: 22 }, "homenet " + view.name), el("svg:text", { x: edgeX, y: 22 }, "MSP"));
  for (const u of uplinks) {
    svg.append(el("svg:line", { x1: 130, y1: homeY, x2: ispX - 40, y2: ispY[u], stroke: "#888", "stroke-width": 2 }));
  }
  for (const p of view.paths) {
    const used = uses[p.path];
    const [x1, y1] = along(p, 0), [x2, y2] = along(p, 1);
    svg.append(el("svg:line", { class: "path " + p.state + (used ? " used" : ""), "data-path": p.path,
      x1: x1, y1: y1, x2: x2, y2: y2 }));
  }
  for (const p of view.paths) {
    // Labels where the lines are apart: the classes near the ISP, the state further on.
    const [ux, uy] = along(p, 0.16), [sx, sy] = along(p, 0.62);
    if (uses[p.path]) {
      svg.append(el("svg:text", { x: ux, y: uy - 7, class: "use", "data-uses": p.path }, uses[p.path].join(" ")));
    }
    const rtt = p.rtt_ms !== null && p.rtt_ms !== undefined ? ", " + p.rtt_ms + " ms" : "";
    const loss = p.loss_pct ? ", " + p.loss_pct + " % loss" : "";
    svg.append(el("svg:text", { x: sx, y: sy - 6, "text-anchor": "middle", "data-state": p.path },
      p.path + ": " + p.state + rtt + loss));
  }
  svg.append(el("svg:rect", { class: "box", x: 20, y: homeY - 30, width: 110, height: 60, rx: 6 }),
    el("svg:text", { x: 30, y: homeY - 8 }, "MSPMB"),
    el("svg:text", { x: 30, y: homeY + 12 }, view.prefixes[0] || ""));
  for (const u of uplinks) {
    svg.append(el("svg:ellipse", { class: "isp", cx: ispX, cy: ispY[u], rx: 42, ry: 24 }),
      el("svg:text", { x: ispX, y: ispY[u] + 4, "text-anchor": "middle" }, u));
  }
  for (const e of edges) {
    svg.append(el("svg:rect", { class: "box", x: edgeX, y: edgeY[e] - 24, width: 150, height: 48, rx: 6 }),
      el("svg:text", { x: edgeX + 10, y: edgeY[e] - 4 }, e + (e === view.edge ? " (primary)" : "")),
      el("svg:text", { x: edgeX + 10, y: edgeY[e] + 14 },
        view.announced_at.includes(e) ? "announcing" : "not announcing"));
  }
}

function drawGraphs() {
  const view = state.homenet;
  if (!view) return;
  const paths = view.paths.map((p) => p.path);
  drawGraph($("rtt"), paths, "rtt_ms");
  drawGraph($("loss"), paths, "loss_pct", 100);
  $("legend").replaceChildren(...paths.flatMap((p, i) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = COLORS[i % COLORS.length];
    return [swatch, document.createTextNode(p)];
  }));
}

function drawGraph(svg, paths, field, fixedMax) {
  const width = 360, height = 140, points = state.history;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.replaceChildren();
  let max = fixedMax || 1;
  if (!fixedMax) {
    for (const sample of points) {
      for (const p of paths) { const v = sample.paths[p] && sample.paths[p][field]; if (v > max) max = v; }
    }
  }
  svg.append(el("svg:text", { x: 4, y: 12 }, String(Math.round(max * 100) / 100)),
    el("svg:text", { x: 4, y: height - 4 }, "0"));
  paths.forEach((p, i) => {
    const coords = [];
    points.forEach((sample, j) => {
      const v = sample.paths[p] ? sample.paths[p][field] : null;
      if (v === null || v === undefined) return;
      coords.push((j * width / 119).toFixed(1) + "," +  // fills from the left, then scrolls
        (height - 4 - (v / max) * (height - 20)).toFixed(1));
    });
    svg.append(el("svg:polyline", { points: coords.join(" "), stroke: COLORS[i % COLORS.length], "data-path": p }));
  });
}

// --- routes ----------------------------------------------------------------------------------

function route() {
  if (!state.me) return;
  const match = location.hash.match(/^#\/homenet\/(.+)$/);
  if (match) {
    show("detail");
    loadHomenet(decodeURIComponent(match[1]));
  } else if (state.me.role !== "operator" && state.me.homenet) {
    location.hash = "#/homenet/" + encodeURIComponent(state.me.homenet);
  } else {
    show("list");
    loadList().catch((err) => { $("counts").textContent = err.message; });
  }
}

async function start() {
  $("login-form").addEventListener("submit", (e) => login(e).catch((err) => { $("login-error").textContent = err.message; }));
  $("logout").addEventListener("click", logout);
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.page = 1; loadList(); }, 250);
  });
  $("status").addEventListener("change", () => { state.page = 1; loadList(); });
  $("prev").addEventListener("click", () => { state.page -= 1; loadList(); });
  $("next").addEventListener("click", () => { state.page += 1; loadList(); });
  window.addEventListener("hashchange", route);
  try {
    started(await api("api/me"));
  } catch (err) {
    loggedOut();
  }
}

document.addEventListener("DOMContentLoaded", start);
