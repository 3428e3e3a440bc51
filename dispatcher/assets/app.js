// The capacity dashboard: live snapshots over SSE, the conference table paged from the
// JSON API, charts drawn on canvas (no library, no CDN), admin actions with a bearer token.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (n) => n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n));
const COLORS = ["#4fb3ff", "#3ecf8e", "#f5b942", "#f0616d", "#a78bfa", "#2dd4bf", "#fb923c", "#e879f9"];
const WINDOW_S = 15 * 60;
const SERVERS_PER_PAGE = 25;

const state = {
  servers: [], serverPage: 0, serverFilter: "",
  confPage: 0, confFilter: "", perPage: 25,
  load: new Map(),      // server id -> [[unix_s, used %]]
  pps: [], loss: [],    // [[unix_s, value]]
};

// ---------- admin ----------
$("token").value = localStorage.getItem("noc-token") || "";
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("noc-token", $("token").value.trim());
  toast("Token saved");
});

function toast(text, err) {
  const t = $("toast");
  t.textContent = text; t.className = "toast" + (err ? " err" : ""); t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
}

async function admin(method, path, body) {
  const token = localStorage.getItem("noc-token") || $("token").value.trim();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) { toast(`${r.status}: ${j.error || r.statusText}`, true); return null; }
  toast(`${j.action} done by ${j.by}`);
  return j;
}

document.addEventListener("click", async (e) => {
  const b = e.target.closest("[data-action]");
  if (!b) return;
  const { action, server, conference, participant } = b.dataset;
  if (action === "drain") await admin("POST", `/api/admin/servers/${encodeURIComponent(server)}/drain`, { on: true });
  if (action === "undrain") await admin("POST", `/api/admin/servers/${encodeURIComponent(server)}/drain`, { on: false });
  if (action === "maint") {
    const now = Math.floor(Date.now() / 1000);
    await admin("POST", `/api/admin/servers/${encodeURIComponent(server)}/maintenance`, { start_unix: now, end_unix: now + 3600 });
  }
  if (action === "unmaint") await admin("DELETE", `/api/admin/servers/${encodeURIComponent(server)}/maintenance`);
  if (action === "punt") await admin("POST", `/api/admin/conferences/${encodeURIComponent(conference)}/punt`);
  if (action === "move") {
    const to = prompt(`Move participant ${participant} of ${conference} to which conference?`, "manager");
    if (to) await admin("POST", "/api/admin/move", { conference, participant: Number(participant), to });
  }
  refresh();
});

// ---------- rendering ----------
function renderSummary(s) {
  $("c-servers").textContent = `${s.servers_by_state["in-service"]} / ${s.servers}`;
  const st = s.servers_by_state;
  $("c-states").textContent = ["draining", "maintenance", "out"].filter((k) => st[k]).map((k) => `${st[k]} ${k}`).join(" · ") || "all in service";
  const pct = s.capacity_total ? (100 * s.capacity_used / s.capacity_total) : 0;
  $("c-capacity").textContent = `${pct.toFixed(1)}%`;
  barWidth($("c-capacity-bar"), pct);
  $("c-conferences").textContent = fmt(s.conferences);
  $("c-participants").textContent = fmt(s.participants);
  $("c-pps").textContent = fmt(s.pps);
  $("c-loss").textContent = `${s.loss_pct.toFixed(2)}%`;
}

function barWidth(el, pct) {
  el.style.width = Math.min(100, pct).toFixed(1) + "%";
  el.className = pct >= 90 ? "full" : pct >= 70 ? "hot" : "";
}

function serverRow(s) {
  const pct = s.total ? 100 * s.used / s.total : 0;
  const age = s.report_age_ms / 1000;
  const actions = [
    s.draining ? `<button data-action="undrain" data-server="${esc(s.id)}">Undrain</button>`
               : `<button class="danger" data-action="drain" data-server="${esc(s.id)}">Drain</button>`,
    s.maintenance ? `<button data-action="unmaint" data-server="${esc(s.id)}">End maint.</button>`
                  : `<button data-action="maint" data-server="${esc(s.id)}" title="Maintenance window: now + 1 h">Maint. 1h</button>`,
  ].join("");
  return `<tr data-server="${esc(s.id)}">
    <td><b>${esc(s.id)}</b><div class="people">${esc(s.client_addr)}</div></td>
    <td class="state"><span class="badge ${s.state}">${s.state}</span></td>
    <td>${esc(s.capabilities)}</td>
    <td class="age ${s.in_communication ? "" : "stale"}">${age.toFixed(1)} s</td>
    <td><div class="cap"><div class="bar"><i style="width:${Math.min(100, pct).toFixed(1)}%" class="${pct >= 90 ? "full" : pct >= 70 ? "hot" : ""}"></i></div><span>${s.used} / ${s.total}</span></div></td>
    <td class="num">${s.conferences}</td><td class="num users">${s.users}</td>
    <td class="num">${s.cpu_pct.toFixed(0)}%</td><td class="num pps">${fmt(s.pps)}</td>
    <td class="num loss">${s.loss_pct.toFixed(2)}%</td>
    <td><div class="actions">${actions}</div></td></tr>`;
}

function renderServers() {
  const f = state.serverFilter.toLowerCase();
  // Busiest first, so a page of 25 out of hundreds shows what matters.
  const rows = state.servers.filter((s) => !f || s.id.toLowerCase().includes(f) || s.state.includes(f))
    .sort((a, b) => (b.used / (b.total || 1)) - (a.used / (a.total || 1)) || a.id.localeCompare(b.id));
  const pages = Math.max(1, Math.ceil(rows.length / SERVERS_PER_PAGE));
  state.serverPage = Math.min(state.serverPage, pages - 1);
  const page = rows.slice(state.serverPage * SERVERS_PER_PAGE, (state.serverPage + 1) * SERVERS_PER_PAGE);
  $("servers").tBodies[0].innerHTML = page.length ? page.map(serverRow).join("")
    : `<tr class="empty"><td colspan="11">No media server has registered yet.</td></tr>`;
  pager($("server-pager"), state.serverPage, pages, rows.length, "servers", (p) => { state.serverPage = p; renderServers(); });
}

function pager(el, page, pages, total, noun, go) {
  if (pages <= 1) { el.innerHTML = ""; return; }
  el.innerHTML = `<span>${total} ${noun} · page ${page + 1} of ${pages}</span>
    <button ${page ? "" : "disabled"} data-go="${page - 1}">‹ Prev</button>
    <button ${page + 1 < pages ? "" : "disabled"} data-go="${page + 1}">Next ›</button>`;
  el.querySelectorAll("[data-go]").forEach((b) => b.addEventListener("click", () => go(Number(b.dataset.go))));
}

function age(s) {
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

async function refreshConferences() {
  const q = new URLSearchParams({ page: state.confPage, per_page: state.perPage, q: state.confFilter });
  const r = await fetch("/api/conferences?" + q);
  if (!r.ok) return;
  const j = await r.json();
  $("conf-count").textContent = `${j.total} running`;
  $("conferences").tBodies[0].innerHTML = j.items.length ? j.items.map((c) => {
    // Members of linked servers are shown, not moved: ids are per server.
    const people = c.participants.slice(0, 8).map((p) => p.server && p.server !== c.server
      ? `<span title="on ${esc(p.server)}">${esc(p.name)}</span>`
      : `<a data-action="move" data-conference="${esc(c.name)}" data-participant="${p.id}" title="Move ${esc(p.name)} to another conference">${esc(p.name)}</a>`).join("");
    const linked = (c.servers || []).filter((s) => s !== c.server);
    const where = linked.length
      ? `${esc(c.server)} <span class="links" title="linked media servers: the conference spreads over them">⇄ ${linked.map(esc).join(", ")}</span>`
      : esc(c.server);
    const more = c.participants.length > 8 ? ` +${c.participants.length - 8}` : "";
    return `<tr data-conference="${esc(c.name)}">
      <td><b>${esc(c.name)}</b><div class="people">${people}${more}</div></td>
      <td class="server">${where}</td><td>${esc(c.mode)}</td>
      <td class="num participants">${c.participants.length}</td><td class="num">${age(c.age_s)}</td>
      <td><div class="actions"><button data-action="punt" data-conference="${esc(c.name)}" title="Move this conference to another server">Punt</button></div></td></tr>`;
  }).join("") : `<tr class="empty"><td colspan="6">No conference is running.</td></tr>`;
  const pages = Math.max(1, Math.ceil(j.total / state.perPage));
  pager($("conf-pager"), state.confPage, pages, j.total, "conferences", (p) => { state.confPage = p; refreshConferences(); });
}

function renderEvents(events) {
  $("events").innerHTML = events.map((e) => {
    const t = new Date(e.unix_ms).toLocaleTimeString([], { hour12: false });
    const what = [e.server, e.conference, e.detail, e.who && `by ${e.who}`].filter(Boolean).map(esc).join(" · ");
    return `<li><time>${t}</time><span class="kind ${e.kind}">${esc(e.kind)}</span><span>${what}</span></li>`;
  }).join("");
}

// ---------- charts ----------
function trim(series, now) {
  while (series.length && series[0][0] < now - WINDOW_S) series.shift();
}

function chart(canvas, lines, opts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const now = Date.now() / 1000, pad = { l: 44, r: 8, t: 8, b: 20 };
  let max = opts.max || 0;
  for (const l of lines) for (const [, v] of l.points) max = Math.max(max, v);
  max = max || 1;
  g.strokeStyle = "#25303b"; g.fillStyle = "#8593a0"; g.font = "11px DejaVu Sans, sans-serif"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (h - pad.t - pad.b) * i / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(opts.label(max * (4 - i) / 4), 2, y + 4);
  }
  for (const m of [15, 10, 5, 0]) {
    const x = pad.l + (w - pad.l - pad.r) * (1 - m * 60 / WINDOW_S);
    g.fillText(m ? `-${m}m` : "now", Math.min(x - 10, w - 30), h - 4);
  }
  for (const l of lines) {
    g.strokeStyle = l.color; g.lineWidth = 1.6; g.beginPath();
    l.points.forEach(([t, v], i) => {
      const x = pad.l + (w - pad.l - pad.r) * (1 - (now - t) / WINDOW_S);
      const y = pad.t + (h - pad.t - pad.b) * (1 - v / max);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

function renderCharts() {
  // Top 8 servers by current load keep the chart readable at 100 servers.
  const top = [...state.load.entries()].sort((a, b) => (b[1].at(-1)?.[1] || 0) - (a[1].at(-1)?.[1] || 0)).slice(0, 8);
  const lines = top.map(([id, points], i) => ({ id, points, color: COLORS[i % COLORS.length] }));
  chart($("chart-load"), lines, { max: 100, label: (v) => v.toFixed(0) + "%" });
  $("legend-load").innerHTML = lines.map((l) => `<span><b style="background:${l.color}"></b>${esc(l.id)}</span>`).join("")
    + (state.load.size > 8 ? `<span>+${state.load.size - 8} more</span>` : "");
  chart($("chart-pps"), [{ points: state.pps, color: COLORS[0] }], { label: fmt });
  chart($("chart-loss"), [{ points: state.loss, color: COLORS[3] }], { max: 1, label: (v) => v.toFixed(2) });
}

function sample(snap) {
  const now = snap.summary.unix_ms / 1000;
  for (const s of snap.servers) {
    if (!state.load.has(s.id)) state.load.set(s.id, []);
    const series = state.load.get(s.id);
    series.push([now, s.total ? 100 * s.used / s.total : 0]);
    trim(series, now);
  }
  for (const id of state.load.keys()) if (!snap.servers.some((s) => s.id === id)) state.load.delete(id);
  state.pps.push([now, snap.summary.pps]); trim(state.pps, now);
  state.loss.push([now, snap.summary.loss_pct]); trim(state.loss, now);
}

async function backfill() {
  const r = await fetch("/api/history");
  if (!r.ok) return;
  const h = await r.json();
  const byTime = new Map();
  for (const [id, samples] of Object.entries(h)) {
    state.load.set(id, samples.map((x) => [x.unix_s, x.total ? 100 * x.used / x.total : 0]));
    for (const x of samples) {
      const t = byTime.get(x.unix_s) || { pps: 0, lossw: 0 };
      t.pps += x.pps; t.lossw += x.loss_pct * x.pps; byTime.set(x.unix_s, t);
    }
  }
  const times = [...byTime.keys()].sort((a, b) => a - b);
  state.pps = times.map((t) => [t, byTime.get(t).pps]);
  state.loss = times.map((t) => { const x = byTime.get(t); return [t, x.pps ? x.lossw / x.pps : 0]; });
}

// ---------- live ----------
function apply(snap) {
  state.servers = snap.servers;
  renderSummary(snap.summary);
  renderServers();
  renderEvents(snap.events);
  sample(snap);
  renderCharts();
  refreshConferences();
}

async function refresh() {
  const [summary, servers, events] = await Promise.all(["/api/summary", "/api/servers", "/api/events"].map((u) => fetch(u).then((r) => r.json())));
  apply({ summary, servers, events: events.slice(-30).reverse() });
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("snapshot", (e) => {
    $("live").classList.add("on"); $("live-text").textContent = "Live";
    apply(JSON.parse(e.data));
  });
  es.onerror = () => { $("live").classList.remove("on"); $("live-text").textContent = "Reconnecting…"; };
}

let typing;
$("conf-filter").addEventListener("input", (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.confFilter = e.target.value.trim(); state.confPage = 0; refreshConferences(); }, 200);
});
$("server-filter").addEventListener("input", (e) => { state.serverFilter = e.target.value.trim(); state.serverPage = 0; renderServers(); });
window.addEventListener("resize", renderCharts);

backfill().then(refresh).finally(connect);
