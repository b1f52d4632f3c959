// ballast dashboard: polls the admin API once a second and renders pools, backends and recent
// backend state changes. Plain JavaScript, no framework, no build step, no external requests.

const POLL_MS = 1000;         // time between the starts of two polls
const FETCH_TIMEOUT_MS = 5000; // a poll that takes longer counts as failed
const WINDOW_MS = 120000;     // the charts show the last two minutes
const GAP_MS = 3500;          // samples further apart than this are not joined in a chart
const MAX_EVENTS = 50;        // recent state changes kept, newest first
const TOKEN_KEY = "ballast.token";

const $ = (id) => document.getElementById(id);

// h builds an element: h("td", {class: "num"}, "12").
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}

// setText changes an element's text only when it differs, so that an unchanged dashboard
// causes no layout work and text stays selectable between polls.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

// takeToken reads ?token=T once, keeps it in sessionStorage and removes it from the visible URL
// (and so from the history and from anything the operator copies). ?token= (empty) forgets it.
function takeToken() {
  const url = new URL(window.location.href);
  let token = null;
  if (url.searchParams.has("token")) {
    token = url.searchParams.get("token");
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage can be disabled; the token still works until the page is reloaded.
    }
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    return token;
  }
  try {
    token = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    token = null;
  }
  return token || "";
}

const token = takeToken();

// APIError carries the HTTP status of a failed request (0 when there was no answer).
class APIError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function getJSON(path) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  let res;
  try {
    res = await fetch(path, { headers, cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    const why = err && err.name === "TimeoutError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s" : "cannot connect";
    throw new APIError(why, 0);
  }
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try {
      const body = await res.json();
      if (body && body.error) msg += ": " + body.error;
    } catch {
      // Not JSON; the status says enough.
    }
    throw new APIError(msg, res.status);
  }
  return res.json();
}

// ---- formatting

const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const twoFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

const num = (v) => (typeof v === "number" && isFinite(v) ? v : 0);

function fmtRate(r) {
  if (r == null) return "–";
  return r < 10 ? oneFmt.format(r) : intFmt.format(r);
}

function fmtLatency(ms) {
  if (ms == null || !(ms > 0)) return "–";
  if (ms >= 1000) return twoFmt.format(ms / 1000) + " s";
  if (ms >= 100) return intFmt.format(ms) + " ms";
  if (ms >= 10) return oneFmt.format(ms) + " ms";
  return twoFmt.format(ms) + " ms";
}

function fmtDuration(sec) {
  sec = Math.max(0, Math.floor(sec));
  const d = Math.floor(sec / 86400);
  const hr = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d > 0) return d + "d " + hr + "h " + m + "m";
  if (hr > 0) return hr + "h " + String(m).padStart(2, "0") + "m";
  if (m > 0) return m + "m " + String(s).padStart(2, "0") + "s";
  return s + "s";
}

function fmtClock(date) {
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return (sameDay ? "" : dayFmt.format(date) + " ") + clockFmt.format(date);
}

function shortHash(hash) {
  if (!hash) return "–";
  const i = hash.indexOf(":");
  return (i >= 0 ? hash.slice(i + 1) : hash).slice(0, 12);
}

const KNOWN_STATES = new Set(["up", "down", "ejected", "draining", "starting"]);

function badge(state) {
  const s = String(state || "unknown");
  return h("span", { class: "badge" + (KNOWN_STATES.has(s) ? " " + s : "") }, s);
}

function setBadge(el, state) {
  const s = String(state || "unknown");
  setText(el, s);
  el.className = "badge" + (KNOWN_STATES.has(s) ? " " + s : "");
}

// ---- charts

// theme holds the chart colours, read from the CSS so that dark and light mode agree.
const theme = {};
function readTheme() {
  const cs = getComputedStyle(document.documentElement);
  for (const name of ["rps", "lat", "grid", "muted", "fg"]) theme[name] = cs.getPropertyValue("--" + name).trim();
}

// niceMax rounds a chart's top up to a round number: 1, 1.5, 2, 3, 4, 5, 6 or 8 times a
// power of ten, so that the curve fills most of the height.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.5, 2, 3, 4, 5, 6, 8, 10]) if (v <= m * p + 1e-9) return m * p;
  return 10 * p;
}

function fmtAxis(v) {
  return v >= 1000 ? intFmt.format(v / 1000) + "k" : twoFmt.format(v);
}

// drawChart plots requests/s (filled, left scale) and average latency (line, right scale) of a
// pool over the last WINDOW_MS, the newest sample at the right edge.
function drawChart(canvas, samples, now) {
  const w = canvas.clientWidth;
  const ht = canvas.clientHeight;
  if (w === 0 || ht === 0) return;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(ht * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, ht);

  const top = 14;
  const bottom = ht - 2;
  const x = (t) => w - ((now - t) / WINDOW_MS) * w;
  let maxRps = 0;
  let maxLat = 0;
  for (const s of samples) {
    if (s.rps != null) maxRps = Math.max(maxRps, s.rps);
    if (s.lat != null) maxLat = Math.max(maxLat, s.lat);
  }
  // The latency scale has more headroom, so that its line mostly runs below the top of the
  // requests/s area instead of on it.
  const rpsTop = niceMax(maxRps * 1.1);
  const latTop = niceMax(maxLat * 1.6);
  const yRps = (v) => bottom - (v / rpsTop) * (bottom - top);
  const yLat = (v) => bottom - (v / latTop) * (bottom - top);

  // Grid: quarters vertically, every 30 s horizontally.
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(top + ((bottom - top) * i) / 4) + 0.5;
    ctx.moveTo(0, y);
    ctx.lineTo(w, y);
  }
  for (let s = 30000; s < WINDOW_MS; s += 30000) {
    const gx = Math.round(w - (s / WINDOW_MS) * w) + 0.5;
    ctx.moveTo(gx, top);
    ctx.lineTo(gx, bottom);
  }
  ctx.stroke();

  // Runs of samples close enough in time to be joined.
  const runs = [];
  let run = [];
  for (const s of samples) {
    if (run.length && s.t - run[run.length - 1].t > GAP_MS) {
      runs.push(run);
      run = [];
    }
    run.push(s);
  }
  if (run.length) runs.push(run);

  for (const r of runs) {
    const pts = r.filter((s) => s.rps != null);
    if (pts.length < 2) continue;
    ctx.beginPath();
    ctx.moveTo(x(pts[0].t), bottom);
    for (const s of pts) ctx.lineTo(x(s.t), yRps(s.rps));
    ctx.lineTo(x(pts[pts.length - 1].t), bottom);
    ctx.closePath();
    ctx.globalAlpha = 0.18;
    ctx.fillStyle = theme.rps;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.beginPath();
    pts.forEach((s, i) => (i ? ctx.lineTo(x(s.t), yRps(s.rps)) : ctx.moveTo(x(s.t), yRps(s.rps))));
    ctx.strokeStyle = theme.rps;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
  for (const r of runs) {
    ctx.beginPath();
    let drawing = false;
    for (const s of r) {
      if (s.lat == null) {
        drawing = false;
        continue;
      }
      if (drawing) ctx.lineTo(x(s.t), yLat(s.lat));
      else ctx.moveTo(x(s.t), yLat(s.lat));
      drawing = true;
    }
    ctx.strokeStyle = theme.lat;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }

  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  ctx.fillStyle = theme.rps;
  ctx.textAlign = "left";
  ctx.fillText(fmtAxis(rpsTop) + " req/s", 2, 0);
  ctx.fillStyle = theme.lat;
  ctx.textAlign = "right";
  ctx.fillText(fmtAxis(latTop) + " ms", w - 2, 0);
}

// ---- state

// pools maps a pool's name to its card's elements and its history: the counters of the
// previous poll (for rates) and the samples of the chart.
const pools = new Map();
let okPolls = 0;
let since = 0; // the "next" of the last page of events
let epoch = 0; // counts restarts of the server's event numbering
let events = [];
let lastOK = null; // Date of the last successful poll

function newPoolView(name) {
  const v = {
    name,
    prevAt: null,
    prev: new Map(), // backend addr -> requests at prevAt
    rates: new Map(), // backend addr -> requests/s over the last interval
    samples: [],
    rows: new Map(), // backend addr -> row elements
  };
  v.title = h("h2", {}, name);
  v.algo = h("span", { class: "tag", title: "algorithm" });
  v.health = h("span", { class: "health" });
  v.launch = h("span", { class: "tag launch", hidden: "" });
  v.rps = h("span", { class: "stat-value rps" }, "–");
  v.lat = h("span", { class: "stat-value lat" }, "–");
  v.queue = h("span", { class: "stat-value" }, "–");
  v.canvas = h("canvas", { role: "img", "aria-label": "requests per second and latency of pool " + name + ", last 2 minutes" });
  v.tbody = h("tbody");
  const head = h("tr", {},
    h("th", { scope: "col" }, "backend"),
    h("th", { scope: "col" }, "state"),
    h("th", { scope: "col", class: "num" }, "weight"),
    h("th", { scope: "col", class: "num" }, "in flight"),
    h("th", { scope: "col", class: "num" }, "req/s"),
    h("th", { scope: "col", class: "num" }, "failures"),
    h("th", { scope: "col", class: "num" }, "ejections"),
    h("th", { scope: "col", class: "num" }, "latency"),
    h("th", { scope: "col" }, "last check error"));
  v.card = h("article", { class: "card pool", "data-pool": name },
    h("div", { class: "pool-head" }, v.title, v.algo, v.launch, v.health),
    h("div", { class: "stats" },
      h("div", { class: "stat" }, v.rps, h("span", { class: "stat-label" }, "req/s")),
      h("div", { class: "stat" }, v.lat, h("span", { class: "stat-label" }, "avg latency")),
      h("div", { class: "stat" }, v.queue, h("span", { class: "stat-label" }, "queue"))),
    h("figure", { class: "chart" }, v.canvas,
      h("figcaption", { class: "legend" },
        h("span", { class: "key rps" }, "requests/s"),
        h("span", { class: "key lat" }, "avg latency (ms)"),
        h("span", {}, "last 2 min"))),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), v.tbody)));
  return v;
}

function newRow(pool, addr) {
  const r = {
    addr: h("span", { class: "addr" }, addr),
    backup: h("span", { class: "tag backup", hidden: "" }, "backup"),
    proc: h("span", { class: "proc", hidden: "" }),
    badge: badge("unknown"),
    weight: h("td", { class: "num" }),
    inflight: h("td", { class: "num" }),
    rps: h("td", { class: "num" }),
    failures: h("td", { class: "num" }),
    ejections: h("td", { class: "num" }),
    latency: h("td", { class: "num" }),
    err: h("td", { class: "err" }),
  };
  r.tr = h("tr", { "data-pool": pool, "data-backend": addr },
    h("th", { scope: "row" }, r.addr, r.backup, r.proc),
    h("td", {}, r.badge),
    r.weight, r.inflight, r.rps, r.failures, r.ejections, r.latency, r.err);
  return r;
}

// updatePool renders one pool of /api/v1/pools at time now (performance.now()).
function updatePool(v, p, now) {
  const backends = Array.isArray(p.backends) ? p.backends : [];
  const elapsed = v.prevAt == null ? 0 : (now - v.prevAt) / 1000;
  let total = null;
  let latWeighted = 0;
  let latSum = 0;
  let latN = 0;
  const seen = new Set();
  v.rates.clear();
  for (const b of backends) {
    const addr = String(b.addr);
    seen.add(addr);
    const req = num(b.requests);
    const before = v.prev.get(addr);
    let rate = null;
    if (elapsed > 0 && before != null) rate = Math.max(0, req - before) / elapsed; // a reset counter counts as 0
    v.prev.set(addr, req);
    if (rate != null) {
      v.rates.set(addr, rate);
      total = (total || 0) + rate;
      latWeighted += rate * num(b.latency_ms);
    }
    if (num(b.latency_ms) > 0) {
      latSum += num(b.latency_ms);
      latN++;
    }
  }
  for (const addr of v.prev.keys()) if (!seen.has(addr)) v.prev.delete(addr);
  v.prevAt = now;
  // Average latency weighted by traffic; with no traffic, the plain mean of what is known.
  let lat = null;
  if (total > 0) lat = latWeighted / total;
  else if (latN > 0) lat = latSum / latN;

  if (total != null) v.samples.push({ t: now, rps: total, lat }); // from the second poll on
  while (v.samples.length && v.samples[0].t < now - WINDOW_MS - GAP_MS) v.samples.shift();

  setText(v.algo, String(p.algorithm || "?"));
  const up = backends.filter((b) => b.state === "up").length;
  setText(v.health, up + " of " + backends.length + " up");
  setText(v.rps, fmtRate(total));
  setText(v.lat, fmtLatency(lat));
  const q = p.queue || {};
  setText(v.queue, num(q.max) > 0 ? intFmt.format(num(q.length)) + " / " + intFmt.format(num(q.max)) : "off");
  if (num(q.timeout_ms) > 0) setAttr(v.queue, "title", "queue timeout " + twoFmt.format(num(q.timeout_ms) / 1000) + " s");
  v.canvas.setAttribute("aria-label", "pool " + v.name + ": " + fmtRate(total) + " requests/s, average latency " + fmtLatency(lat) + "; chart of the last 2 minutes");

  // A launched pool: its processes, by backend address.
  const launch = p.launch && Array.isArray(p.launch.instances) ? p.launch : null;
  const procs = new Map();
  v.launch.hidden = !launch;
  if (launch) {
    for (const inst of launch.instances) procs.set(String(inst.addr), inst);
    setText(v.launch, "launched ×" + launch.instances.length + " · " + intFmt.format(num(launch.restarts)) + " restarts");
    setAttr(v.launch, "title", (Array.isArray(launch.command) ? launch.command.join(" ") : "") +
      (num(launch.max_conns) > 0 ? " (max_conns " + num(launch.max_conns) + " each)" : ""));
  }

  // Rows in the API's order; rows of removed backends go.
  let i = 0;
  for (const b of backends) {
    const addr = String(b.addr);
    let r = v.rows.get(addr);
    if (!r) {
      r = newRow(v.name, addr);
      v.rows.set(addr, r);
    }
    updateRow(r, b, v.rates.get(addr));
    updateProc(r, procs.get(addr));
    if (v.tbody.children[i] !== r.tr) v.tbody.insertBefore(r.tr, v.tbody.children[i] || null);
    i++;
  }
  for (const [addr, r] of v.rows) {
    if (!seen.has(addr)) {
      r.tr.remove();
      v.rows.delete(addr);
    }
  }
}

function updateRow(r, b, rate) {
  const state = String(b.state || "unknown");
  setAttr(r.tr, "data-state", state);
  setBadge(r.badge, state);
  r.backup.hidden = !b.backup;
  setText(r.weight, intFmt.format(num(b.weight)));
  const mc = num(b.max_conns);
  setText(r.inflight, intFmt.format(num(b.in_flight)) + (mc > 0 ? " / " + intFmt.format(mc) : ""));
  setText(r.rps, fmtRate(rate));
  setText(r.failures, intFmt.format(num(b.failures)));
  setText(r.ejections, intFmt.format(num(b.ejections)));
  setText(r.latency, fmtLatency(b.latency_ms));
  const err = String(b.last_check_error || "");
  setText(r.err, err || "–");
  setAttr(r.err, "title", err);
}

// updateProc shows the process behind a launched backend: its pid, its restarts, its last exit.
function updateProc(r, inst) {
  r.proc.hidden = !inst;
  if (!inst) return;
  let text = "pid " + num(inst.pid);
  if (num(inst.restarts) > 0) text += " · " + intFmt.format(num(inst.restarts)) + " restarts";
  setText(r.proc, text);
  setAttr(r.proc, "title", "process " + String(inst.state || "") + (inst.last_exit ? "; last exit: " + inst.last_exit : ""));
}

function renderPools(data, now) {
  const list = Array.isArray(data.pools) ? data.pools : [];
  const container = $("pools");
  const seen = new Set();
  let i = 0;
  for (const p of list) {
    const name = String(p.name);
    seen.add(name);
    let v = pools.get(name);
    if (!v) {
      v = newPoolView(name);
      pools.set(name, v);
    }
    updatePool(v, p, now);
    if (container.children[i] !== v.card) container.insertBefore(v.card, container.children[i] || null);
    i++;
  }
  for (const [name, v] of pools) {
    if (!seen.has(name)) {
      v.card.remove();
      pools.delete(name);
    }
  }
  // Anything else in the container (the "waiting" note, or "no pools") goes.
  while (container.children.length > i) container.lastElementChild.remove();
  if (list.length === 0) container.append(h("p", { class: "empty card" }, "No pools configured."));
  // The tab's title says when something is wrong, for an operator looking at another tab.
  const bad = list.flatMap((p) => p.backends || []).filter((b) => b.state === "down" || b.state === "ejected").length;
  const title = bad ? "(" + bad + " down) ballast" : "ballast";
  if (document.title !== title) document.title = title;
  drawCharts(now);
}

function drawCharts(now) {
  for (const v of pools.values()) drawChart(v.canvas, v.samples, now);
}

function renderHeader(data) {
  setText($("version"), String(data.version || "–"));
  const hash = String(data.config_hash || "");
  setText($("config-hash"), shortHash(hash));
  setAttr($("config-hash"), "title", hash);
  const started = Date.parse(data.started);
  setText($("uptime"), isNaN(started) ? "–" : fmtDuration((Date.now() - started) / 1000));
  const ul = $("listeners");
  const items = (Array.isArray(data.listeners) ? data.listeners : []).map((l) =>
    h("li", {}, h("b", {}, String(l.name)), " " + String(l.listen) + " " + String(l.protocol || "")));
  const key = items.map((li) => li.textContent).join("\n");
  if (ul.dataset.key !== key) {
    ul.replaceChildren(...items);
    ul.dataset.key = key;
  }
}

// addEvents merges a page of /api/v1/events, oldest first, into the newest-first list.
function addEvents(data) {
  const got = Array.isArray(data.events) ? data.events : [];
  const next = num(data.next);
  if (next < since) {
    // The server restarted and numbers its events from the start again: ask for all it has
    // on the next poll, and keep what was seen before as history of the old numbering.
    since = 0;
    epoch++;
    return;
  }
  since = next;
  const known = new Set(events.filter((e) => e.epoch === epoch).map((e) => e.seq));
  const fresh = got.filter((e) => !known.has(e.seq));
  if (fresh.length === 0) return;
  for (const e of fresh) events.unshift({ ...e, epoch });
  events = events.slice(0, MAX_EVENTS);
  $("events").replaceChildren(...events.map(eventItem));
  $("events-empty").hidden = true;
}

function eventItem(e) {
  const when = new Date(e.time);
  const time = isNaN(when)
    ? h("time", {}, "")
    : h("time", { datetime: when.toISOString(), title: when.toString() }, fmtClock(when));
  const line = h("div", { class: "ev-line" }, time);
  if (e.from) line.append(badge(e.from), h("span", { class: "ev-arrow", "aria-label": "to" }, "→"));
  line.append(badge(e.to));
  const li = h("li", { "data-seq": String(e.seq), "data-pool": String(e.pool), "data-backend": String(e.backend), "data-to": String(e.to) },
    line,
    h("div", { class: "ev-where" }, h("b", {}, String(e.pool)), h("span", { class: "addr" }, String(e.backend))));
  if (e.reason) li.append(h("div", { class: "ev-reason" }, String(e.reason)));
  return li;
}

function showOK() {
  okPolls++;
  lastOK = new Date();
  document.body.dataset.updated = String(okPolls);
  document.body.classList.remove("stale");
  const t = $("updated");
  setText(t, clockFmt.format(lastOK));
  setAttr(t, "datetime", lastOK.toISOString());
  $("banner").hidden = true;
}

function showFailure(err) {
  document.body.classList.add("stale");
  let msg = "Admin API unreachable: " + err.message + ".";
  if (!(err instanceof APIError)) {
    msg = "Dashboard error: " + (err && err.message ? err.message : String(err)) + ".";
  } else if (err.status === 401) {
    msg = "Admin API refused the request (401): open the dashboard with ?token=YOUR_ADMIN_TOKEN.";
  }
  msg += lastOK ? " Showing data from " + clockFmt.format(lastOK) + "; retrying every second." : " Retrying every second.";
  setText($("banner"), msg);
  $("banner").hidden = false;
}

let timer = 0;

async function poll() {
  clearTimeout(timer);
  const start = performance.now();
  try {
    const [data, evs] = await Promise.all([
      getJSON("api/v1/pools"),
      getJSON("api/v1/events?since=" + encodeURIComponent(since)),
    ]);
    const now = performance.now();
    renderHeader(data);
    renderPools(data, now);
    addEvents(evs);
    showOK();
  } catch (err) {
    showFailure(err);
    if (!(err instanceof APIError)) throw err; // a bug in this page: let it reach the console
  } finally {
    timer = setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - start)));
  }
}

readTheme();
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  readTheme();
  drawCharts(performance.now());
});
window.addEventListener("resize", () => drawCharts(performance.now()));
poll();
