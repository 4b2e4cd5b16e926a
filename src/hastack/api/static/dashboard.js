// The hastack dashboard: reads /v1/status, /v1/hosts, /v1/operations and /v1/events every 2 s
// with the operator's token (X-Auth-Token) and redraws only what changed.  Read-only: it never
// POSTs.  Every string from the API goes into textContent or an attribute, never into HTML.
"use strict";

const REFRESH_MS = 2000;
const FETCH_TIMEOUT_MS = 5000;
const TOKEN_KEY = "hastack.token";
const STATES = ["ok", "suspect", "failed", "fencing", "fenced", "fence_failed", "recovering",
  "recovered", "maintenance"];
const COMPACT_ABOVE = 200; // hosts: past this, tiles shrink so 1,000+ fit on a screen

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

let token = null;
let timer = null;
let inFlight = false;
let skew = 0; // server clock minus ours, in seconds, from the Date header
let stateFilter = null; // a host state selected in the legend
const tiles = new Map(); // host name -> its <li>, kept across refreshes
const lastRendered = { ops: "", events: "", guards: "" };

// ---------------------------------------------------------------- time

const serverNow = () => Date.now() / 1000 + skew;
const pad = (n) => String(n).padStart(2, "0");

function clock(ts) {
  if (ts === null || ts === undefined || ts <= 0) return "–";
  const d = new Date(ts * 1000);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date().toDateString() === d.toDateString();
  return today ? hms : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

function ago(ts) {
  const s = Math.max(0, Math.round(serverNow() - ts));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

// ---------------------------------------------------------------- token and fetching

function takeToken() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = fragment.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    // keep the token out of the location bar, history and screenshots
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, {
      headers: { "X-Auth-Token": token, Accept: "application/json" },
      cache: "no-store",
      signal: abort.signal,
    });
  } catch (err) {
    const why = err.name === "AbortError" ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s`
      : "network error";
    throw new ApiError(0, `controller unreachable (${why})`);
  } finally {
    clearTimeout(timeout);
  }
  const date = Date.parse(response.headers.get("Date") || "");
  // the header has 1 s resolution: only a real skew is worth correcting
  if (!Number.isNaN(date) && Math.abs(date / 1000 - Date.now() / 1000) > 2) {
    skew = date / 1000 - Date.now() / 1000;
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && typeof body.error === "string" ? body.error : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return body;
}

// ---------------------------------------------------------------- banner and login

function showBanner(text, kind) {
  const banner = $("banner");
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
  $("banner").textContent = "";
}

function askForToken() {
  stop();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("login").hidden = false;
  $("forget").hidden = true;
  $("token-input").focus();
}

function start(newToken) {
  token = newToken;
  $("login").hidden = true;
  $("forget").hidden = false;
  $("whoami").textContent = "–";
  stop();
  refresh();
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

// ---------------------------------------------------------------- refresh

async function refresh() {
  if (inFlight || token === null) return;
  inFlight = true;
  const used = token;
  try {
    const paths = ["v1/status", "v1/hosts", "v1/operations?limit=50", "v1/events?limit=50"];
    if ($("whoami").textContent === "–") paths.push("v1/whoami");
    const results = await Promise.allSettled(paths.map(api));
    if (used !== token) return; // the token changed while we waited
    const [status, hosts, ops, events, who] = results.map((r) =>
      (r.status === "fulfilled" ? r.value : null));
    // draw each part that answered: a follower without a leader still has status, operations
    // and events to show, and stale hosts beat an empty page
    if (status) {
      renderStatus(status, who);
      renderGuards(status.guards, status);
    }
    if (hosts) renderHosts(hosts.hosts, status ? status.hosts_by_state : countStates(hosts.hosts));
    if (ops) renderOperations(ops.operations);
    if (events) renderEvents(events.events);
    const failed = results.map((r, i) => [paths[i], r.reason]).filter(([, err]) => err);
    if (failed.length === 0) {
      hideBanner();
      $("updated").textContent = clock(Date.now() / 1000);
      document.body.classList.remove("stale");
    } else {
      report(failed);
    }
  } catch (err) {
    document.body.classList.add("stale");
    showBanner(`dashboard error: ${err.message}`, "error"); // a bug here, not in the API
  } finally {
    inFlight = false;
    if (token !== null) timer = setTimeout(refresh, REFRESH_MS);
  }
}

function report(failed) {
  document.body.classList.add("stale");
  const refused = failed.find(([, err]) => err.status === 401);
  if (refused) {
    showBanner(`token refused: ${refused[1].message}. Enter another token.`, "auth");
    askForToken();
    return;
  }
  const [, err] = failed[0];
  const where = failed.map(([path]) => path.split("?")[0]).join(", ");
  if (err.status === 0) showBanner(`${err.message}; retrying every 2 s.`, "network");
  else if (err.status === 403) showBanner(`forbidden (${where}): ${err.message}`, "auth");
  else if (err.status) showBanner(`API error ${err.status} (${where}): ${err.message}`, "error");
  else showBanner(`dashboard error (${where}): ${err.message}`, "error");
}

function countStates(hosts) {
  const counts = {};
  for (const h of hosts) counts[h.state] = (counts[h.state] || 0) + 1;
  return counts;
}

// ---------------------------------------------------------------- header

function renderStatus(s, who) {
  $("controller").textContent = s.controller + (s.leading ? " (leading)" : "");
  $("leader").textContent = s.leader === null ? "none" : `${s.leader} · epoch ${s.epoch ?? "?"}`;
  $("profile").textContent = s.profile;
  $("paused").hidden = !s.paused;
  $("halted-badge").hidden = !s.guards.halted;
  $("verdict").textContent = s.verdict || "(none)";
  const tick = $("tick-at");
  tick.textContent = s.tick_at ? `${clock(s.tick_at)} (${ago(s.tick_at)})` : "never";
  if (s.tick_at) tick.dateTime = new Date(s.tick_at * 1000).toISOString();
  if (who) $("whoami").textContent = `${who.name} (${who.role})`;
}

// ---------------------------------------------------------------- hosts

function hostTitle(h) {
  const lines = [`${h.name}: ${h.state}` + (h.since > 0 ? ` since ${clock(h.since)}` : "")];
  if (h.reason) lines.push(`reason: ${h.reason}`);
  if (h.segment) lines.push(`segment: ${h.segment}`);
  if (h.maintenance) lines.push("maintenance: hastack observes, never acts");
  if (h.operation) lines.push(`operation: ${h.operation}`);
  for (const sig of h.signals) {
    const word = sig.lost === null ? "no data" : sig.lost ? "LOST" : "ok";
    lines.push(`${sig.signal}: ${word}` + (sig.detail ? ` (${sig.detail})` : ""));
  }
  return lines.join("\n");
}

// "compute-0001", "compute-0002", ...: small tiles show "0001", "0002" (the tooltip has it all)
function commonPrefix(names) {
  if (names.length < 2) return "";
  let prefix = names[0];
  for (const name of names) while (!name.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}

function renderHosts(hosts, byState) {
  const grid = $("hosts");
  const byName = (a, b) => a.localeCompare(b, "en", { numeric: true });
  const names = hosts.map((h) => h.name).sort(byName);
  const sameSet = names.length === tiles.size && names.every((n) => tiles.has(n));
  if (!sameSet) {
    // hosts came or went: rebuild the order once, reusing the tiles we have
    const compact = names.length > COMPACT_ABOVE;
    const cut = compact ? commonPrefix(names).length : 0;
    const keep = new Set(names);
    for (const name of [...tiles.keys()]) if (!keep.has(name)) tiles.delete(name);
    const fragment = document.createDocumentFragment();
    for (const name of names) {
      if (!tiles.has(name)) tiles.set(name, el("li", { className: "tile" }));
      const tile = tiles.get(name);
      tile.dataset.host = name;
      tile.textContent = name.slice(cut) || name;
      fragment.append(tile);
    }
    grid.classList.toggle("compact", compact);
    grid.replaceChildren(fragment);
  }
  for (const h of hosts) {
    const tile = tiles.get(h.name);
    if (tile.dataset.state !== h.state) tile.dataset.state = h.state;
    const title = hostTitle(h);
    if (tile.title !== title) {
      tile.title = title;
      tile.setAttribute("aria-label", `${h.name}: ${h.state}`);
    }
    tile.classList.toggle("has-op", h.operation !== null);
  }
  $("hosts-count").textContent = `(${hosts.length})`;
  renderLegend(byState);
  applyFilter();
}

function renderLegend(byState) {
  // one button per state, made once and updated in place so keyboard focus survives a refresh
  const legend = $("legend");
  const known = STATES.concat(Object.keys(byState).filter((s) => !STATES.includes(s)));
  for (const state of known) {
    let button = legend.querySelector(`button[data-state="${CSS.escape(state)}"]`);
    if (button === null) {
      button = el("button", { type: "button", className: "chip" },
        el("span", { className: "swatch" }), `${state.replaceAll("_", " ")} `, el("b"));
      button.dataset.state = state;
      button.addEventListener("click", () => {
        stateFilter = stateFilter === state ? null : state;
        for (const b of legend.querySelectorAll("button")) {
          b.setAttribute("aria-pressed", String(b.dataset.state === stateFilter));
        }
        applyFilter();
      });
      button.setAttribute("aria-pressed", "false");
      legend.append(el("li", {}, button));
    }
    const count = byState[state] || 0;
    button.querySelector("b").textContent = String(count);
    button.classList.toggle("zero", count === 0);
  }
}

function applyFilter() {
  const text = $("host-filter").value.trim().toLowerCase();
  for (const [name, tile] of tiles) {
    const show = (!text || name.toLowerCase().includes(text))
      && (stateFilter === null || tile.dataset.state === stateFilter);
    if (tile.hidden === show) tile.hidden = !show;
  }
}

// ---------------------------------------------------------------- guards

function renderGuards(g, status) {
  const key = JSON.stringify([g, status.hosts_visible, status.hosts_total]);
  if (key === lastRendered.guards) return;
  lastRendered.guards = key;
  const halted = $("halted");
  halted.hidden = !g.halted;
  halted.textContent = g.halted ? `Halted: ${g.halted}` : "";
  const budgets = g.budgets.map((b) => {
    const fill = b.limit > 0 ? Math.min(100, (100 * b.used) / b.limit) : 100;
    const level = b.used >= b.limit ? "full" : fill >= 50 ? "high" : "low";
    const bar = el("span", { className: `bar ${level}` }, el("span", { className: "fill" }));
    bar.firstChild.style.width = `${fill}%`;
    return el("li", {},
      el("span", { className: "budget-name" }, b.kind === b.domain ? b.kind
        : `${b.kind} ${b.domain}`), bar,
      el("span", { className: "budget-use" }, `${b.used} / ${b.limit} in ${duration(b.window)}`));
  });
  $("budgets").replaceChildren(...(budgets.length ? budgets : [el("li", { className: "muted" },
    "none configured")]));
  const rows = [
    ["Cliff", `${g.cliff_hosts} hosts or ${g.cliff_percent} % within ${duration(g.cliff_window)}`],
    ["Fences per tick", String(g.max_fences_per_tick)],
    ["Visible hosts", `${status.hosts_visible} / ${status.hosts_total} ` +
      `(≥ ${Math.round(g.min_visible_fraction * 100)} %)`],
    ["Open operations", String(status.operations_open)],
  ];
  $("limits").replaceChildren(...rows.map(([k, v]) =>
    el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

// ---------------------------------------------------------------- operations timeline

function renderOperations(ops) {
  const now = serverNow();
  // open bars grow with time, so redraw those every refresh; the rest only when they change
  const key = JSON.stringify(ops) + (ops.some((o) => o.state === "open") ? now : "");
  if (key === lastRendered.ops) return;
  lastRendered.ops = key;
  $("ops-empty").hidden = ops.length > 0;
  const open = ops.filter((o) => o.state === "open").length;
  $("ops-count").textContent = ops.length ? `(${open} open, ${ops.length} shown)` : "";
  const end = (o) => (o.state === "open" ? Math.max(now, o.updated) : o.updated);
  const t0 = Math.min(...ops.map((o) => o.created), now);
  const t1 = Math.max(...ops.map(end), now);
  const span = Math.max(t1 - t0, 60);
  const pct = (t) => (100 * (t - t0)) / span;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const tick = el("span", { className: "tick" }, clock(t0 + f * span));
    tick.style.left = `${f * 100}%`;
    return tick;
  });
  $("axis").replaceChildren(...ticks);
  // open operations first, then newest first
  const sorted = [...ops].sort((a, b) =>
    (b.state === "open") - (a.state === "open") || b.created - a.created);
  $("operations").replaceChildren(...sorted.map((o) => {
    const label = el("div", { className: "op-label" },
      el("strong", {}, o.host), ` ${o.kind} · ${o.done}/${o.actions} · `,
      el("span", { className: "op-state" }, o.state),
      ` · host ${o.host_state.replaceAll("_", " ")}`,
      el("div", { className: "op-reason" }, o.reason));
    const bar = el("div", { className: "op-bar" });
    bar.style.left = `${pct(o.created)}%`;
    bar.style.width = `${Math.max(pct(end(o)) - pct(o.created), 0)}%`;
    const until = o.state === "open" ? "now" : clock(o.updated);
    bar.title = `${o.id}\n${clock(o.created)} → ${until} (${duration(end(o) - o.created)})`;
    const row = el("li", { className: "op" }, label, el("div", { className: "op-track" }, bar));
    row.dataset.op = o.id;
    row.dataset.state = o.state;
    row.dataset.subject = o.host;
    return row;
  }));
}

// ---------------------------------------------------------------- audit trail

function renderEvents(events) {
  const key = JSON.stringify(events);
  if (key === lastRendered.events) return;
  lastRendered.events = key;
  $("events").replaceChildren(...events.map((e) => {
    const time = el("time", { dateTime: new Date(e.at * 1000).toISOString() }, clock(e.at));
    const row = el("tr", {}, el("td", {}, time), el("td", {}, e.subject), el("td", {}, e.by),
      el("td", {}, e.message));
    row.dataset.kind = e.kind;
    return row;
  }));
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    hideBanner();
    start(value);
  });
  $("forget").addEventListener("click", () => {
    hideBanner();
    askForToken();
  });
  $("host-filter").addEventListener("input", applyFilter);
  const saved = takeToken();
  if (saved) start(saved);
  else askForToken();
});
