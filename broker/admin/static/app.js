// Chorus admin console: polls the admin JSON API every 2 s and renders it. No build step.
"use strict";

const POLL_MS = 2000;
const state = { token: sessionStorage.getItem("chorus-admin-token") || "", allowCrash: false,
  selected: "", closed: new Set(["chorus/connections"]), channel: "", timer: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch("api/" + path, { ...options,
    headers: { "Authorization": "Bearer " + state.token, "Content-Type": "application/json" } });
  if (response.status === 401) { showLogin("Session expired: log in again."); throw new Error("401"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body || {}) });

// --- formatting -------------------------------------------------------------------------
const fmtNum = (n) => n === undefined || n === null ? "–" :
  Math.abs(n) >= 1e6 ? (n / 1e6).toFixed(1) + "M" : Math.abs(n) >= 1e4 ? (n / 1e3).toFixed(1) + "k" :
  Number.isInteger(n) ? String(n) : n.toFixed(2);
const fmtBytes = (n) => n === undefined || n === null ? "–" : n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB" :
  n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
const fmtTime = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "–";
const fmtAgo = (t) => { const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? Math.round(s) + "s" : s < 3600 ? Math.round(s / 60) + "m" : (s / 3600).toFixed(1) + "h"; };
const shortId = (id) => id.split("/").pop();

function flash(text, isError) {
  const out = $("action-result");
  out.textContent = text;
  out.className = isError ? "error small" : "muted small";
}

async function act(label, fn) {
  try { await fn(); flash(label + ": done"); await refresh(); }
  catch (error) { if (error.message !== "401") flash(label + ": " + error.message, true); }
}

// --- tree -------------------------------------------------------------------------------
function actorRow(actor) {
  const id = actor.id;
  const failure = actor.last_failure;
  const buttons = [];
  if (actor.parent) {
    buttons.push(el("button", { class: "small", "data-action": "restart", title: "Restart",
      onclick: (e) => { e.stopPropagation(); act("restart " + id, () => post("actors/" + id + "/restart")); } }, "restart"));
    if (actor.restart !== "permanent") {  // the API refuses (409): it would stay down for good
      buttons.push(el("button", { class: "small", "data-action": "stop", title: "Stop",
        onclick: (e) => { e.stopPropagation(); if (confirm("Stop " + id + "?")) act("stop " + id, () => post("actors/" + id + "/stop")); } }, "stop"));
    }
  }
  if (state.allowCrash && actor.parent) {  // crashing the root would end the whole tree
    buttons.push(el("button", { class: "small danger", "data-action": "crash", title: "Inject a crash",
      onclick: (e) => { e.stopPropagation(); act("crash " + id, () => post("actors/" + id + "/crash")); } }, "crash"));
  }
  return el("div", { class: `actor state-${actor.state}${state.selected === id ? " selected" : ""}`,
    "data-actor-id": id, title: `${id} — ${actor.state}, ${actor.messages} messages`,
    onclick: () => { state.selected = id; showActor(id); } },
    el("span", { class: "dot" }), el("span", { class: "name" }, shortId(id)),
    el("span", { class: "kind" }, actor.kind),
    el("span", { class: "restarts" + (actor.restarts ? " nonzero" : ""), title: "restarts" }, "↻ " + actor.restarts),
    failure ? el("span", { class: "failure", title: failure.reason }, failure.reason) : null,
    el("span", { class: "actions" }, buttons));
}

function treeList(nodes) {
  return el("ul", {}, nodes.map((actor) => {
    const kids = actor.children || [];
    const item = el("li", {}, actorRow(actor));
    if (kids.length || actor.children_total) {
      const open = !state.closed.has(actor.id);
      const toggle = el("button", { class: "small", onclick: () => {
        open ? state.closed.add(actor.id) : state.closed.delete(actor.id); render(lastData); } },
        open ? "▾ " + actor.children_total : "▸ " + actor.children_total);
      item.firstChild.insertBefore(toggle, item.firstChild.firstChild);
      if (open) {
        const list = treeList(kids);
        if (actor.children_total > kids.length)
          list.append(el("li", { class: "more" }, `… and ${actor.children_total - kids.length} more`));
        item.append(list);
      }
    }
    return item;
  }));
}

async function showActor(id) {
  try {
    const actor = await api("actors/" + id);
    $("actor-card").hidden = false;
    $("actor-id").textContent = id;
    const failure = actor.last_failure;
    $("actor-detail").replaceChildren(
      el("p", {}, `kind ${actor.kind} · state ${actor.state} · restarts ${actor.restarts} · ` +
        `messages ${actor.messages} · started ${fmtTime(actor.started_at)}`),
      failure ? el("div", {}, el("p", { class: "error" }, `Last failure at ${fmtTime(failure.at)}: ${failure.reason}`),
        el("pre", { class: "trace" }, failure.traceback)) : el("p", { class: "muted" }, "No failure recorded."));
  } catch (error) { $("actor-card").hidden = true; }
}

// --- node, charts, alerts ------------------------------------------------------------------
function sparkline(values, color) {
  const canvas = el("canvas", { width: 240, height: 60 });
  const ctx = canvas.getContext("2d");
  const points = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...points), min = Math.min(0, ...points);
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  values.forEach((v, i) => {
    if (v === null || v === undefined) return;
    const x = values.length < 2 ? 0 : (i / (values.length - 1)) * 238 + 1;
    const y = 58 - ((v - min) / (max - min || 1)) * 54;
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
  return canvas;
}

const CHARTS = [["publications_rate", "publications/s", "#2563eb", fmtNum],
  ["deliveries_rate", "deliveries/s", "#7c3aed", fmtNum], ["connections", "connections", "#1f9d55", fmtNum],
  ["loop_lag", "loop lag (ms)", "#d97706", (v) => (v * 1000).toFixed(1)]];

function renderNode(node) {
  $("node-name").textContent = node.name;
  const ready = node.readiness.ready;
  $("ready").textContent = ready ? "ready" : "not ready: " + node.readiness.problems.join(", ");
  $("ready").className = "badge " + (ready ? "ok" : "bad");
  const s = node.sample || {};
  const stat = (label, value) => el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label));
  $("node-stats").replaceChildren(stat("connections", fmtNum(node.num_clients)), stat("users", fmtNum(node.num_users)),
    stat("subscriptions", fmtNum(node.num_subs)), stat("channels", fmtNum(s.channels)),
    stat("engine", node.engine + (s.engine_up === 0 ? " (down)" : "")),
    stat("RSS", fmtBytes(s.rss_bytes)), stat("open files", `${fmtNum(s.open_files)} / ${fmtNum(s.open_files_limit)}`),
    stat("actor restarts", fmtNum(Object.values(node.actor_restarts).reduce((a, b) => a + b, 0))), stat("uptime", fmtAgo(Date.now() / 1000 - node.uptime)),
    stat("L1 cache hit ratio", node.cache ? `${(100 * node.cache.hit_ratio).toFixed(0)} % of ${fmtNum(node.cache.hits + node.cache.misses)}` : "-"),
    stat("L1 cache", node.cache ? `${fmtBytes(node.cache.bytes)} · ${fmtNum(node.cache.evictions)} evicted` : "-"));
  $("charts").replaceChildren(...CHARTS.map(([key, label, color, fmt]) => {
    const values = node.chart[key] || [];
    const last = values.length ? values[values.length - 1] : null;
    return el("div", { class: "chart" }, el("div", { class: "title" }, el("span", {}, label),
      el("b", {}, last === null ? "–" : fmt(last))), sparkline(values.map((v) => key === "loop_lag" && v !== null ? v * 1000 : v), color));
  }));
}

function renderAlerts(alerts) {
  const count = alerts.active.length;
  $("alert-count").textContent = count ? `${count} alert${count > 1 ? "s" : ""}` : "no alerts";
  $("alert-count").className = "badge " + (count ? "warn" : "ok");
  const rows = alerts.active.map((a) => el("div", { class: "alert " + a.severity, "data-alert": a.name },
    el("b", {}, a.name), ` — ${a.message} (since ${fmtTime(a.since)})`));
  const recent = alerts.recent.slice(0, 5).map((a) => el("div", { class: "alert " + (a.resolved_at ? "resolved" : a.severity) },
    `${fmtTime(a.resolved_at || a.since)} ${a.name} ${a.resolved_at ? "resolved" : "fired"}`));
  const parts = [count ? el("div", {}, rows) : el("p", { class: "muted" }, "Nothing firing.")];
  if (recent.length) parts.push(el("p", { class: "muted small" }, "Recent:"), ...recent);
  parts.push(el("p", { class: "muted small" }, "Rules: " + (alerts.rules.join(" · ") || "none")));
  $("alerts").replaceChildren(...parts);
}

// --- async consumers (outbox table, Redis streams) ------------------------------------------
function renderConsumers(data) {
  $("consumers-card").hidden = !data.consumers.length;
  const head = el("tr", {}, ["consumer", "type", "owned here", "processed", "redeliveries", "invalid",
    "errors", "lag", "last error"].map((h) => el("th", {}, h)));
  const rows = data.consumers.map((c) => el("tr", { "data-consumer": c.name },
    el("td", { class: "name" }, c.name), el("td", {}, c.type),
    el("td", { class: "num", title: c.owned.join(", ") }, `${c.owned.length} / ${c.partitions}`),
    el("td", { class: "num" }, fmtNum(c.processed)), el("td", { class: "num" }, fmtNum(c.redeliveries)),
    el("td", { class: "num" }, fmtNum(c.invalid)), el("td", { class: "num" }, fmtNum(c.errors)),
    el("td", { class: "num" }, c.lag === null ? "–" : fmtNum(c.lag) + (c.lag_capped ? "+" : "")),
    el("td", { class: "error small" }, c.last_error ? `${c.last_error} (${fmtAgo(c.last_error_at)} ago)` : "")));
  $("consumers").replaceChildren(head, ...rows);
}

// --- Pusher apps (pusher-js sockets and their channels on this node) ------------------------
function renderPusher(data) {
  $("pusher-card").hidden = !data.apps.length;
  const head = el("tr", {}, ["app", "key", "sockets", "channels", "client events", "API calls",
    "webhooks sent / failed"].map((h) => el("th", {}, h)));
  const rows = data.apps.map((a) => el("tr", { "data-pusher-app": a.id },
    el("td", { class: "name" }, a.id), el("td", {}, a.key), el("td", { class: "num" }, fmtNum(a.connections)),
    el("td", { class: "num", title: a.channels.map((c) => `${c.name} (${c.subscribers})`).join(", ") },
      fmtNum(a.channels_total)),
    el("td", { class: "num" }, fmtNum(a.client_events)), el("td", { class: "num" }, fmtNum(a.api_calls)),
    el("td", { class: "num" }, `${fmtNum(a.webhooks.sent)} / ${fmtNum(a.webhooks.failed)}`)));
  $("pusher").replaceChildren(head, ...rows);
}

// --- connections and channels ----------------------------------------------------------------
function renderConnections(data) {
  $("conn-total").textContent = `(${data.total})`;
  const head = el("tr", {}, ["user", "client", "remote", "protocol", "connected", "subs", "msgs in", "msgs out",
    "bytes out", "outbox / peak", "last error", ""].map((h) => el("th", {}, h)));
  const rows = data.connections.map((c) => el("tr", { "data-client": c.client },
    el("td", {}, c.user ? el("a", { href: "?journey=" + encodeURIComponent(c.user), title: "show the journey",
      onclick: (event) => { event.preventDefault(); journeyState.user = c.user; $("journey-user-input").value = c.user;
        refreshJourneys(); } }, c.user) : el("i", { class: "muted" }, "anonymous")), el("td", { class: "name" }, c.client.slice(0, 8)),
    el("td", {}, c.remote), el("td", {}, `${c.transport}/${c.protocol}`), el("td", {}, fmtAgo(c.connected_at)),
    el("td", { class: "num", title: c.subscriptions.join(", ") }, c.subscriptions.length),
    el("td", { class: "num" }, fmtNum(c.messages_in)), el("td", { class: "num" }, fmtNum(c.messages_out)),
    el("td", { class: "num" }, fmtBytes(c.bytes_out)), el("td", { class: "num" }, `${fmtBytes(c.outbox_bytes)} / ${fmtBytes(c.outbox_peak)}`),
    el("td", { class: "error small" }, c.last_error || ""),
    el("td", {}, el("button", { class: "small danger", "data-action": "disconnect",
      onclick: () => act("disconnect " + c.client, () => post("connections/" + c.client + "/disconnect")) }, "disconnect"))));
  $("connections").replaceChildren(head, ...rows);
}

function renderChannels(data) {
  $("chan-total").textContent = `(${data.total})`;
  const head = el("tr", {}, ["channel", "namespace", "subscribers", "shard"].map((h) => el("th", {}, h)));
  const rows = data.channels.map((c) => el("tr", { class: "clickable", "data-channel": c.name,
    onclick: () => { state.channel = c.name; showChannel(); } },
    el("td", { class: "name" }, c.name), el("td", {}, c.namespace || "—"),
    el("td", { class: "num" }, c.subscribers), el("td", { class: "num" }, c.shard)));
  $("channels").replaceChildren(head, ...rows);
}

async function showChannel() {
  if (!state.channel) return;
  try {
    const c = await api("channels/" + encodeURIComponent(state.channel));
    const parts = [el("b", {}, c.name), ` — ${c.subscribers} local subscriber(s), shard ${c.shard}`];
    if (c.presence) parts.push(`, presence ${c.presence.num_clients} client(s) / ${c.presence.num_users} user(s)`);
    if (c.history) parts.push(`, history top ${c.history.offset} (epoch ${c.history.epoch})`);
    const latest = c.history ? c.history.latest.map((p) => el("div", { class: "small name" }, `#${p.offset} ${p.data}`)) : [];
    $("channel-detail").replaceChildren(el("p", {}, ...parts), ...latest);
    $("pub-channel").value = c.name; $("unsub-channel").value = c.name;
  } catch (error) { $("channel-detail").textContent = error.message; }
}

// --- proxies ----------------------------------------------------------------------------------
function renderProxies(data) {
  $("proxies-card").hidden = !data.proxies.length;
  const head = el("tr", {}, ["proxy", "endpoint", "breaker", "in flight", "event", "calls", "errors",
    "mean ms"].map((h) => el("th", {}, h)));
  const rows = data.proxies.flatMap((p) => {
    const kinds = Object.entries(p.kinds);
    const breaker = p.breaker === null ? "—" : p.breaker + (p.breaker === "open" ? ` (${p.retry_in}s)` : "");
    const first = (kind) => [el("td", { class: "name" }, p.name), el("td", { class: "small" }, p.endpoint),
      el("td", { class: "breaker-" + p.breaker }, breaker), el("td", { class: "num" }, p.in_flight)];
    const cells = ([kind, k]) => [el("td", {}, kind), el("td", { class: "num" }, fmtNum(k.calls)),
      el("td", { class: "num" + (k.errors ? " error" : ""), title: JSON.stringify(k.error_reasons) }, fmtNum(k.errors)),
      el("td", { class: "num" }, k.mean_ms.toFixed(1))];
    if (!kinds.length) return [el("tr", { "data-proxy": p.name }, ...first(), el("td", { class: "muted" }, "no calls yet"))];
    return kinds.map((entry, i) => el("tr", { "data-proxy": p.name },
      ...(i ? [el("td"), el("td"), el("td"), el("td")] : first()), ...cells(entry)));
  });
  $("proxies").replaceChildren(head, ...rows);
}

// --- main loop --------------------------------------------------------------------------------
let lastData = null;

function render(data) {
  if (!data) return;
  $("tree").replaceChildren(treeList(data.tree.tree));
  renderNode(data.nodes.nodes[0]);
  renderAlerts(data.alerts);
  renderConsumers(data.consumers);
  renderPusher(data.pusher);
  renderConnections(data.connections);
  renderChannels(data.channels);
  renderProxies(data.proxies);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function refresh() {
  const [tree, nodes, connections, channels, alerts, proxies, consumers, pusher] = await Promise.all(
    ["tree", "nodes", "connections", "channels", "alerts", "proxies", "consumers", "pusher"].map((p) => api(p)));
  lastData = { tree, nodes, connections, channels, alerts, proxies, consumers, pusher };
  render(lastData);
  if (typeof refreshJourneys === "function") refreshJourneys();  // static/journeys.js
}

async function poll() {
  try { await refresh(); } catch (error) { if (error.message !== "401") $("updated").textContent = "update failed: " + error.message; }
  if (state.token) state.timer = setTimeout(poll, POLL_MS);
}

function showLogin(message) {
  clearTimeout(state.timer);
  state.token = ""; sessionStorage.removeItem("chorus-admin-token");
  $("console").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function start() {
  try {
    const session = await api("session");
    state.allowCrash = session.allow_crash_actor;
    $("login").hidden = true; $("console").hidden = false; $("logout").hidden = false;
    poll();
  } catch (error) { if (error.message !== "401") showLogin(error.message); }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("api/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password: $("password").value }) });
  const body = await response.json();
  if (!response.ok) { $("login-error").textContent = body.error || "login failed"; return; }
  state.token = body.token; sessionStorage.setItem("chorus-admin-token", body.token);
  start();
});
$("logout").addEventListener("click", () => showLogin("Logged out."));
$("publish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  let data;
  try { data = JSON.parse($("pub-data").value); } catch (error) { flash("data is not JSON", true); return; }
  act("publish", () => post("publish", { channel: $("pub-channel").value, data }));
});
$("unsub-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act("unsubscribe", () => post("unsubscribe", { user: $("unsub-user").value, channel: $("unsub-channel").value }));
});

if (state.token) start(); else showLogin();
