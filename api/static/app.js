// budgetprune dashboard: plain JS, no build step. Talks to the same REST API as every client,
// with the user's token from localStorage. Live progress: server-sent events read through
// fetch (so the token travels in a header, not the URL), polling when the stream fails.
"use strict";
const API = "../v1";
const TERMINAL = ["succeeded", "failed", "infeasible", "cancelled"];
const EVENTS_PAGE = 1000; // the most history entries one GET /events answers
const POLL_MS = 2000;
// Progress phases whose measurement is not a round: the dense model, and delivery (a repeat
// of the value the last certification measured).
const NOT_ROUNDS = ["baseline", "deliver"];
const view = document.getElementById("view");
let stopLive = () => {};

function token() { return localStorage.getItem("bp_token") || ""; }
function headers() { return token() ? { Authorization: "Bearer " + token() } : {}; }
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function ms(v) { return v == null ? "–" : v.toFixed(2) + " ms"; }

async function api(path, opts = {}) {
  const r = await fetch(API + path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(r.status + ": " + detail);
  }
  return r;
}

document.getElementById("login").addEventListener("submit", e => {
  e.preventDefault();
  localStorage.setItem("bp_token", document.getElementById("token").value.trim());
  document.getElementById("token").value = "";
  route();
});

function stateBadge(s) { return `<span class="state ${esc(s)}">${esc(s)}</span>`; }
function bar(p) { return `<span class="bar"><i style="width:${Math.round(p * 100)}%"></i></span> ${Math.round(p * 100)}%`; }

async function jobsPage() {
  const jobs = await (await api("/jobs")).json();
  view.innerHTML = `<h2>Jobs (${jobs.count})</h2><table id="jobs"><tr><th>Job</th><th>Model</th><th>State</th><th>Phase</th><th>Progress</th><th>Budget</th><th>Measured</th><th>Created</th></tr>` +
    jobs.data.map(j => `<tr data-id="${esc(j.id)}"><td><a href="#/jobs/${esc(j.id)}">${esc(j.id.slice(0, 8))}</a></td><td>${esc(j.spec.model)}</td><td>${stateBadge(j.state)}</td><td>${esc(j.phase)}</td><td>${bar(j.progress)}</td><td>${ms(j.budget_ms)}</td><td>${ms(j.measured_ms)}</td><td>${esc(new Date(j.created_at).toLocaleString())}</td></tr>`).join("") + "</table>";
  const live = jobs.data.some(j => !TERMINAL.includes(j.state));
  if (live) { const t = setTimeout(() => location.hash === "#/jobs" && jobsPage().catch(showError), 3000); stopLive = () => clearTimeout(t); }
}

function lineChart(series, opts) {
  // series: [{name, color, points: [[x, y, title?]], dash}], returns an SVG string.
  const W = 520, H = 220, P = 40;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) return "<p>No data yet.</p>";
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1e-9), y0 = 0, y1 = Math.max(...ys) * 1.1 || 1;
  const X = x => P + (x - x0) / (x1 - x0) * (W - 2 * P), Y = y => H - P + (y0 - y) / (y1 - y0) * (H - 2 * P);
  const lines = series.map(s => `<g data-series="${esc(s.name)}"><polyline fill="none" stroke="${s.color}" stroke-width="2" ${s.dash ? 'stroke-dasharray="5,4"' : ""} points="${s.points.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ")}"/>` +
    s.points.map(p => s.dash ? "" : `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="2.5" fill="${s.color}">${p[2] ? `<title>${esc(p[2])}</title>` : ""}</circle>`).join("") + "</g>").join("");
  const legend = series.map((s, i) => `<text x="${P + i * 110}" y="14" fill="${s.color}">■ ${esc(s.name)}</text>`).join("");
  const ticks = [0, .25, .5, .75, 1].map(f => { const v = y0 + f * (y1 - y0); return `<text x="2" y="${Y(v) + 4}" font-size="10">${v.toFixed(v < 10 ? 2 : 0)}</text><line x1="${P}" x2="${W - P}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>`; }).join("");
  const step = Math.max(1, Math.ceil((x1 - x0) / 8)), xs0 = Math.ceil(x0); // whole numbers: rounds, steps
  const xticks = Array.from({ length: Math.floor((x1 - xs0) / step) + 1 }, (_, k) => xs0 + k * step).map(v => `<text x="${X(v).toFixed(1)}" y="${H - P + 14}" font-size="10" text-anchor="middle">${v}</text>`).join("");
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(opts.label)}">${ticks}${xticks}${lines}${legend}<text x="${W / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${esc(opts.xlabel)}</text></svg>`;
}

function roundsFromEvents(events) {
  // While the job runs, the rounds come from its progress history, each measurement paired
  // with the prediction for the same candidate: a search event carries both, while
  // certification reports its prediction first and the measured value in its next event of
  // that phase (fine-tune events in between carry neither). Predictions with no measurement
  // of their own (a fitting strategy's expected latency while it trains) are no round.
  const rounds = [];
  let pending = null; // a prediction waiting for its measurement
  for (const e of events) {
    if (NOT_ROUNDS.includes(e.phase)) { pending = null; continue; }
    if (e.measured_ms == null) { if (e.predicted_ms != null) pending = e; continue; }
    const paired = pending && pending.phase === e.phase ? pending.predicted_ms : null;
    rounds.push({ round: rounds.length + 1, kind: e.phase, measured_ms: e.measured_ms, predicted_ms: e.predicted_ms ?? paired });
    pending = null;
  }
  return rounds;
}

function latencyChart(events, rounds) {
  // x is the round: its measured and predicted points are of the same candidate. `rounds`
  // are report.json's once the job has one (numbered as in the rounds table), otherwise
  // paired from the progress history. Dense latency and budget come from the history.
  const title = (r, what, v) => `round ${r.round} (${r.kind}): ${what} ${ms(v)}`;
  const m = rounds.filter(r => r.measured_ms != null).map(r => [r.round, r.measured_ms, title(r, "measured", r.measured_ms)]);
  const p = rounds.filter(r => r.predicted_ms != null).map(r => [r.round, r.predicted_ms, title(r, "predicted", r.predicted_ms)]);
  const b = events.map(e => e.budget_ms).filter(v => v != null).pop();
  const dense = events.filter(e => e.phase === "baseline" && e.measured_ms != null).map(e => e.measured_ms).pop();
  const x0 = Math.min(...rounds.map(r => r.round), 1), x1 = Math.max(...rounds.map(r => r.round), x0 + 1);
  const series = [{ name: "measured", color: "#2f6fde", points: m }, { name: "predicted", color: "#e08a1e", points: p }];
  if (b != null) series.push({ name: "budget", color: "#c62828", dash: true, points: [[x0, b], [x1, b]] });
  if (dense != null) series.push({ name: "dense", color: "#888", dash: true, points: [[x0, dense], [x1, dense]] });
  return lineChart(series, { label: "latency against budget", xlabel: "round" });
}

function trainingChart(curve) {
  // Each fine-tune (one per certification) counts its steps from 0: laid end to end, so the
  // line runs left to right through every fine-tune in the order they ran.
  let offset = 0, last = -1;
  const points = curve.map(c => {
    if (c.step <= last) offset += last + 1;
    last = c.step;
    return [offset + c.step, c.loss, `step ${c.step}: loss ${c.loss.toFixed(3)}`];
  });
  return lineChart([{ name: "loss", color: "#2f6fde", points }], { label: "training loss", xlabel: "step (every fine-tune in turn)" });
}

function blocksPicture(arch) {
  const heads = arch.blocks.map(b => b.heads.length);
  const maxMlp = Math.max(...arch.blocks.map(b => b.mlp_hidden), 1);
  const keep = (arch.tokens && arch.tokens.keep) || {};
  let nHeads = 0; arch.blocks.forEach(b => b.heads.forEach(h => { nHeads = Math.max(nHeads, h + 1); }));
  return `<table class="blocks"><tr><th>Block</th><th>Heads</th><th>qk / v</th><th>MLP</th><th>Tokens</th></tr>` + arch.blocks.map((b, i) => {
    const cells = Array.from({ length: Math.max(nHeads, heads[i]) }, (_, h) => `<span class="head ${b.attn && b.heads.includes(h) ? "" : "off"}" title="head ${h}"></span>`).join("");
    return `<tr><td>${i}</td><td>${b.attn ? cells : "<i>dropped</i>"}</td><td>${b.attn ? b.qk_dim + " / " + b.v_dim : "–"}</td><td>${b.mlp ? `<span class="w" style="width:${Math.round(120 * b.mlp_hidden / maxMlp)}px"></span> ${b.mlp_hidden}` : "<i>dropped</i>"}</td><td>${keep[i] != null ? Math.round(keep[i] * 100) + "%" : ""}</td></tr>`;
  }).join("") + "</table>";
}

async function download(jobId, name) {
  const blob = await (await api(`/jobs/${jobId}/artifacts/${name}`)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function renderJob(job, events, rounds) {
  const spec = job.spec;
  document.getElementById("status").innerHTML = `<p>${stateBadge(job.state)} phase <b>${esc(job.phase)}</b> ${bar(job.progress)} · budget ${ms(job.budget_ms)} · ${job.measured === false ? "estimated (analytical profile, not measured)" : "measured"} ${ms(job.measured_ms)} · predicted ${ms(job.predicted_ms)}</p>` +
    (job.training ? `<p id="training-now">${trainingLine(job.training)}</p>` : "") +
    (job.error ? `<p class="error">${esc(job.error)}</p>` : "") +
    `<p>${esc(spec.model)} · ${esc(spec.runtime)} · device ${esc(spec.device)} · ${spec.threads} thread(s) · strategy ${esc(spec.strategy)}</p>` +
    (job.artifacts.length ? "<p>Download: " + job.artifacts.map(n => `<a href="#" data-artifact="${esc(n)}">${esc(n)}</a>`).join(" · ") + "</p>" : "");
  document.querySelectorAll("[data-artifact]").forEach(a => a.addEventListener("click", e => { e.preventDefault(); download(job.id, a.dataset.artifact).catch(showError); }));
  document.getElementById("latency").innerHTML = latencyChart(events, rounds || roundsFromEvents(events));
  // While the job trains, its curve comes from the history; the report's replaces it after.
  const live = events.filter(e => e.training).map(e => ({ step: e.training.step, loss: e.training.loss }));
  if (!rounds && live.length) document.getElementById("training").innerHTML = trainingChart(live);
}

function trainingLine(t) {
  const bits = [`training (${esc(t.loop)}) step ${t.step}/${t.steps}`, `loss ${t.loss.toFixed(3)}`];
  if (t.expected_ms != null) bits.push(`expected ${ms(t.expected_ms)}`);
  if (t.heads_open != null) bits.push(`${t.heads_open} heads and ${t.neurons_open} MLP neurons open`);
  if (t.keep) bits.push(`token keep ${t.keep.map(k => Math.round(k * 100) + "%").join(" / ")}`);
  return bits.join(" · ");
}

function renderRounds(rounds) {
  document.getElementById("rounds").innerHTML = `<table><tr><th>#</th><th>kind</th><th>goal</th><th>predicted</th><th>measured</th><th>GMACs</th></tr>` + rounds.map(r => `<tr><td>${r.round}</td><td>${esc(r.kind)}</td><td>${ms(r.goal_ms)}</td><td>${ms(r.predicted_ms)}</td><td>${ms(r.measured_ms)}</td><td>${r.gmacs.toFixed(3)}</td></tr>`).join("") + "</table>";
}

async function renderResults(job) {
  // The finished job's files; returns its report (null while there is none). An infeasible
  // job has only its report: the rounds it measured, and why it stopped.
  if (!job.artifacts.includes("report.json")) return null;
  if (!job.artifacts.includes("certificate.json")) {
    const report = await (await api(`/jobs/${job.id}/artifacts/report.json`)).json();
    renderRounds(report.rounds || []);
    document.getElementById("cert").innerHTML = `<p class="notpassed">No certificate: ${esc(report.reason || job.state)}</p>`;
    return report;
  }
  const [cert, report, arch] = await Promise.all(["certificate.json", "report.json", "arch.json"].map(async n => (await api(`/jobs/${job.id}/artifacts/${n}`)).json()));
  document.getElementById("cert").innerHTML = `<p class="${cert.passed ? "passed" : "notpassed"}">${cert.passed ? "PASSED" : "NOT PASSED"}: p${cert.percentile} ${ms(cert.certified_ms)} ≤ budget ${ms(cert.budget_ms)}</p><p>${cert.device.measured === false ? `<b class="estimated">ESTIMATED by the analytical profile ${esc(cert.device.runtime)}, not measured on a device</b> · ${esc(cert.device.cpu_model)}` : `${esc(cert.device.cpu_model)} · ${esc(cert.device.runtime)} ${esc(cert.device.runtime_version)} · ${cert.device.threads} thread(s) · ${cert.measured.runs} runs`}</p><pre>${esc(JSON.stringify(cert, null, 2))}</pre>`;
  document.getElementById("blocks").innerHTML = blocksPicture(arch);
  const curve = report.training_curve || [];
  document.getElementById("training").innerHTML = curve.length ? trainingChart(curve) : `<p>No training in this job${report.accuracy && report.accuracy.note ? ": " + esc(report.accuracy.note) : "."}</p>`;
  renderRounds(report.rounds || []);
  return report;
}

async function eventsAfter(jobId, after) {
  // The job's history after event `after`, every page of it.
  const all = [];
  for (;;) {
    const page = (await (await api(`/jobs/${jobId}/events?after=${after}`)).json()).data;
    all.push(...page);
    if (page.length < EVENTS_PAGE) return all;
    after = page[page.length - 1].id;
  }
}

function follow(jobId, { lastEventId, onProgress, onJob }) {
  // Server-sent events, read through fetch so the token travels in a header (EventSource
  // cannot send one). When the stream cannot be had, or ends before the job does, poll the
  // two resources the stream is made of, in its order: history entries newer than the last
  // one seen, then the job; so the page shows the same either way.
  const ctrl = new AbortController();
  let timer = null, stopped = false;
  stopLive = () => { stopped = true; ctrl.abort(); clearTimeout(timer); };
  const live = document.getElementById("live");
  const poll = async () => {
    try {
      for (const e of await eventsAfter(jobId, lastEventId())) onProgress(e);
      const job = await (await api(`/jobs/${jobId}`)).json();
      live.textContent = "";
      await onJob(job);
      if (TERMINAL.includes(job.state)) return;
    } catch (err) { live.textContent = "Live updates failed (retrying): " + err.message; }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  };
  (async () => {
    let ended = false; // the stream told us the job is over
    try {
      const r = await api(`/jobs/${jobId}/stream`, { signal: ctrl.signal });
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = /event: (\w+)/.exec(chunk), data = /data: (.*)/.exec(chunk);
          if (!ev || !data) continue;
          const body = JSON.parse(data[1]);
          if (ev[1] === "progress") onProgress(body);
          else if (ev[1] === "job") { await onJob(body); ended = TERMINAL.includes(body.state); }
        }
      }
    } catch (e) { /* no stream here (proxy, old browser, network): poll */ }
    if (!stopped && !ended) poll();
  })();
}

async function jobPage(jobId) {
  view.innerHTML = `<h2>Job ${esc(jobId)}</h2><div id="status"></div><p id="live" class="error"></p><div class="cards">
    <div class="card"><h3>Latency against budget</h3><div id="latency"></div></div>
    <div class="card"><h3>Training curve</h3><div id="training"><p>After the job.</p></div></div>
    <div class="card wide"><h3>What was kept</h3><div id="blocks"><p>After the job.</p></div></div>
    <div class="card"><h3>Rounds (measured on the device)</h3><div id="rounds"><p>After the job.</p></div></div>
    <div class="card"><h3>Certificate</h3><div id="cert"><p>After the job.</p></div></div></div>`;
  const events = await eventsAfter(jobId, 0);
  const seen = new Set(events.map(e => e.id));
  let job = await (await api(`/jobs/${jobId}`)).json();
  let rounds = null; // report.json's, once there is one
  const results = async () => { const report = await renderResults(job); if (report) rounds = report.rounds || []; renderJob(job, events, rounds); };
  renderJob(job, events, rounds);
  await results();
  if (TERMINAL.includes(job.state)) return;
  follow(jobId, {
    lastEventId: () => events.reduce((m, e) => Math.max(m, e.id), 0),
    onProgress: e => { if (seen.has(e.id)) return; seen.add(e.id); events.push(e); renderJob(job, events, rounds); },
    onJob: async data => { job = data; renderJob(job, events, rounds); if (TERMINAL.includes(job.state)) await results(); },
  });
}

async function devicesPage() {
  const d = await (await api("/devices")).json();
  view.innerHTML = `<h2>Devices (${d.count})</h2><table id="devices"><tr><th>Agent</th><th>Class</th><th>CPU / SoC</th><th>Cores</th><th>Runtimes</th><th>State</th><th>Last heartbeat</th><th>Queue</th></tr>` +
    d.data.map(a => `<tr><td title="${esc(a.id)}">${esc(a.name)}</td><td>${esc(a.device_class)}</td><td>${esc(a.cpu_model)}</td><td>${a.cores}</td><td>${a.runtimes.map(r => esc(r.name + " " + r.version)).join(", ")}</td><td>${stateBadge(a.state)}</td><td>${esc(new Date(a.last_heartbeat).toLocaleString())}</td><td>${a.queued_tasks}</td></tr>`).join("") + "</table>" +
    `<h2>Analytical profiles (estimates, not measured)</h2><table id="profiles"><tr><th>Device</th><th>Class</th><th>Board</th><th>Calibrated against</th></tr>` +
    (d.profiles || []).map(p => `<tr><td>${esc(p.device)}</td><td>${esc(p.device_class)}</td><td>${esc(p.board)}</td><td>${esc(p.calibration)}</td></tr>`).join("") + "</table>";
}

function submitPage() {
  view.innerHTML = `<h2>Submit a job</h2><form class="submit" id="submit">
    <label>Model <input name="model" value="deit_tiny_patch16_224" required></label>
    <label>Device (class, agent id or fpga:&lt;profile&gt;) <input name="device" value="cpu"></label>
    <label>Runtime <select name="runtime"><option>onnxruntime</option><option>tvm</option></select></label>
    <label>Budget (ms) <input name="budget_ms" type="number" step="any" min="0"></label>
    <label>or fraction of dense latency <input name="budget_fraction" type="number" step="any" min="0" max="1" value="0.6"></label>
    <button>Submit</button></form><p id="submit-result"></p>`;
  document.getElementById("submit").addEventListener("submit", async e => {
    e.preventDefault();
    const f = new FormData(e.target), body = { model: f.get("model"), device: f.get("device"), runtime: f.get("runtime") };
    if (f.get("budget_ms")) body.budget_ms = Number(f.get("budget_ms")); else body.budget_fraction = Number(f.get("budget_fraction"));
    try {
      const job = await (await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();
      location.hash = "#/jobs/" + job.id;
    } catch (err) { document.getElementById("submit-result").innerHTML = `<span class="error">${esc(err.message)}</span>`; }
  });
}

function showError(e) { view.insertAdjacentHTML("afterbegin", `<p class="error">${esc(e.message)}</p>`); }

async function route() {
  stopLive(); stopLive = () => {};
  document.getElementById("who").textContent = token() ? "token set" : "no token";
  if (!token()) { view.innerHTML = "<p>Enter your API token (<code>budgetprune token create</code>) above.</p>"; return; }
  const [, page, id] = (location.hash || "#/jobs").split("/");
  try {
    if (page === "jobs" && id) await jobPage(id);
    else if (page === "devices") await devicesPage();
    else if (page === "submit") submitPage();
    else await jobsPage();
  } catch (e) { view.innerHTML = ""; showError(e); }
}
window.addEventListener("hashchange", route);
route();
