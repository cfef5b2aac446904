// Connection journeys: the node's funnel and aggregates, and one user's timeline across
// nodes (GET /admin/api/journeys[?user=]). Uses app.js's helpers (api, el, $, fmt*).
"use strict";

const journeyState = { user: new URLSearchParams(location.search).get("journey") || "" };

const pct = (r) => r === null || r === undefined ? "–" : (100 * r).toFixed(r < 1 && r > 0.99 ? 1 : 0) + " %";
const ms = (s) => s === null || s === undefined ? "–" : s < 1 ? (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms" : s.toFixed(2) + " s";
const EVENT_CLASS = { connect: "ok", reconnect: "accent", subscribe: "ok", first_publication: "accent",
  unsubscribe: "idle", refresh: "idle", disconnect: "warn", auth_failure: "bad", connect_failed: "bad",
  limit: "bad", slow_consumer: "bad", subscribe_failed: "bad" };

function funnelBars(funnel, id) {
  const top = Math.max(1, funnel.connected);
  const steps = [["connected", "connected"], ["subscribed", "subscribed"], ["first_publication", "first publication received"]];
  return el("div", { class: "funnel", id }, steps.map(([key, label], i) => {
    const value = funnel[key] || 0;
    const share = i ? ` (${pct(value / top)})` : "";
    return el("div", { class: "funnel-step", "data-step": key },
      el("span", { class: "funnel-label" }, label),
      el("div", { class: "funnel-track" }, el("div", { class: "funnel-bar", style: `width:${(100 * value / top).toFixed(1)}%` })),
      el("b", { class: "funnel-value" }, fmtNum(value) + share));
  }));
}

function renderJourneySummary(summary, journal) {
  const stat = (label, value, title) => el("div", { class: "stat", title }, el("b", {}, value), el("span", {}, label));
  const codes = Object.entries(summary.disconnects_by_code).sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code}×${n}`).join(" ");
  $("journey-stats").replaceChildren(
    stat("connect success", pct(summary.connect_success_ratio), `${summary.connects} of ${summary.connect_attempts} attempts`),
    stat("time to connect p50 / p99", `${ms(summary.time_to_connect.p50)} / ${ms(summary.time_to_connect.p99)}`),
    stat("to first publication p50 / p99", `${ms(summary.time_to_first_publication.p50)} / ${ms(summary.time_to_first_publication.p99)}`),
    stat("recovery success", pct(summary.recovery_success_ratio), `${summary.recovered} of ${summary.recoveries} recoveries`),
    stat("reconnects", fmtNum(summary.reconnects), `time away p50 ${ms(summary.time_away.p50)}`),
    stat(`in the last ${summary.storm_window}s`, summary.reconnect_storm ? `${summary.reconnects_in_window} ⚠ storm` : fmtNum(summary.reconnects_in_window)),
    stat("disconnects by code", codes || "–"),
    stat("slow consumers · limits", `${fmtNum(summary.slow_consumers)} · ${fmtNum(Object.values(summary.limits).reduce((a, b) => a + b, 0))}`),
    stat("journal", `${journal.store} · ${fmtNum(journal.written)} stored`, `dropped ${journal.dropped}, failed batches ${journal.failed_batches}`));
  $("journey-funnel").replaceChildren(el("p", { class: "muted small" }, "Node funnel (connections since start):"),
    funnelBars(summary.funnel, "node-funnel"));
}

function detail(e) {
  switch (e.event) {
    case "connect": return `${e.transport}/${e.protocol} · ${e.sdk || "?"} ${e.sdk_version || ""} · in ${ms(e.time_to_connect)}`;
    case "reconnect": { const m = e.missed || {};
      return `after ${ms(e.time_away)} away (was ${e.previous_code} on ${e.previous_node}) · replayed ${m.publications_replayed || 0}` +
        (m.unrecovered && m.unrecovered.length ? ` · NOT recovered: ${m.unrecovered.join(", ")}` : ""); }
    case "subscribe": return e.channel + (e.recovering ? ` · recovered: ${e.recovered} · replayed ${e.replayed}` : "");
    case "disconnect": return `${e.code} ${e.reason} · after ${ms(e.duration)}`;
    case "unsubscribe": return `${e.channel} · ${e.code} ${e.reason}`;
    case "first_publication": return e.channel;
    default: return [e.channel, e.code, e.reason].filter((x) => x !== undefined && x !== "").join(" · ");
  }
}

function timelineLanes(journey) {
  const events = journey.events;
  if (!events.length) return el("p", { class: "muted" }, "No events for this user.");
  const t0 = events[0].t, t1 = Math.max(events[events.length - 1].t, t0 + 0.001);
  const x = (t) => (100 * (t - t0) / (t1 - t0)).toFixed(2) + "%";
  const lanes = journey.sessions.map((s) => {
    const end = s.disconnected_at || t1;
    const marks = events.filter((e) => e.client === s.client).map((e) => el("span", {
      class: "mark " + (EVENT_CLASS[e.event] || "idle"), style: `left:${x(e.t)}`, title: `${e.event} ${detail(e)}` }));
    return el("div", { class: "lane", "data-session": s.client },
      el("span", { class: "lane-label small" }, `${s.node} · ${s.client.slice(0, 8)}`),
      el("div", { class: "lane-track" }, el("div", { class: "lane-bar" + (s.disconnected_at ? "" : " open"),
        style: `left:${x(s.connected_at)};width:calc(${x(end)} - ${x(s.connected_at)})` }), ...marks),
      el("span", { class: "small muted" }, s.code === null ? "connected" : String(s.code)));
  });
  return el("div", { class: "lanes" }, lanes);
}

function renderJourney(journey) {
  const head = el("tr", {}, ["time", "node", "event", "client", "details"].map((h) => el("th", {}, h)));
  const rows = journey.events.map((e) => el("tr", { "data-event": e.event },
    el("td", { class: "small" }, new Date(e.t * 1000).toLocaleTimeString([], { hour12: false }) + "." + String(Math.floor((e.t % 1) * 1000)).padStart(3, "0")),
    el("td", {}, e.node), el("td", {}, el("span", { class: "ev " + (EVENT_CLASS[e.event] || "idle") }, e.event)),
    el("td", { class: "name" }, e.client.slice(0, 8)), el("td", { class: "small" }, detail(e))));
  $("journey-user").replaceChildren(
    el("p", {}, el("b", {}, journey.user), ` — ${journey.sessions.length} connection(s), ${journey.events.length} event(s)`),
    funnelBars(journey.funnel, "user-funnel"), timelineLanes(journey),
    el("div", { class: "scroll" }, el("table", { id: "journey-events" }, head, ...rows)));
}

async function refreshJourneys() {
  const card = $("journeys-card");
  try {
    const overview = await api("journeys?limit=1");
    card.hidden = false;
    renderJourneySummary(overview.summary, overview.journal);
    if (journeyState.user) renderJourney(await api("journeys?user=" + encodeURIComponent(journeyState.user)));
  } catch (error) {
    if (error.message !== "401") card.hidden = !journeyState.user;
  }
}

$("journey-form").addEventListener("submit", (event) => {
  event.preventDefault();
  journeyState.user = $("journey-user-input").value.trim();
  refreshJourneys();
});
