// The dashboard's pages. Each takes the <main> element and the path's parameters, fills it,
// and returns a function that stops its refreshes and streams (or nothing).
import { bars, figure, fmt, line } from "./charts.js";
import {
  actionButton, api, every, h, link, ms, seconds, session, showError, status, table, usd, when,
} from "./core.js";

const PRIORITIES = ["urgent", "high", "normal", "low"];
const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function card(label, value, chart) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), chart ?? null);
}

function todayIso() {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())).toISOString();
}

function minuteLabel(t) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// --- overview -------------------------------------------------------------------------------

export function overview(view) {
  const cards = h("div", { class: "cards", id: "overview-cards" });
  const queues = h("div", { id: "overview-queues" });
  const limits = h("div", { id: "overview-usage" });
  view.replaceChildren(h("h1", {}, "Overview"), cards, h("h2", {}, "Queues"), queues,
    h("h2", {}, "Usage against limits (UTC)"), limits);
  let flow = { rows: [], cost: null };
  const stopAnalytics = every(10000, async () => {
    const [tp, cost] = await Promise.all([
      api("/v1/analytics/throughput"),
      api(`/v1/analytics/cost?group_by=day&since=${encodeURIComponent(todayIso())}`),
    ]);
    flow = { rows: tp.rows, cost: cost.rows.reduce((s, r) => s + Number(r.cost_usd), 0) };
    limits.replaceChildren(usageTable(await tenantUsages()));
  });
  const stopLive = every(2000, async () => {
    const [q, failed] = await Promise.all([
      api("/v1/queues"), api("/v1/jobs?status=failed&limit=500"),
    ]);
    const hourAgo = Date.now() * 1000 - 3600e6;
    const failedHour = failed.jobs.filter((j) => (j.finished_at ?? 0) >= hourAgo).length;
    const rows = flow.rows;
    const full = rows.length > 1 ? rows[rows.length - 2] : rows[rows.length - 1];
    const running = q.queues.reduce((s, x) => s + x.running, 0);
    const queued = q.queues.reduce((s, x) => s + x.queued, 0);
    cards.replaceChildren(
      card("Jobs / min (last full minute)", fmt(full?.jobs), line(rows.map((r) => r.jobs), { label: "jobs per minute, last hour", height: 36 })),
      card("Tokens / s (last full minute)", fmt(full?.tokens_per_s, 1), line(rows.map((r) => r.tokens_per_s), { label: "tokens per second, last hour", height: 36 })),
      card("Running", fmt(running)),
      card("Queued", fmt(queued)),
      card("Failed, last hour", failedHour >= 500 ? "500+" : fmt(failedHour)),
      card("Cost today (UTC)", usd(flow.cost)),
    );
    queues.replaceChildren(queueTable(q.queues));
  });
  return () => { stopAnalytics(); stopLive(); };
}

// A user sees its own tenant; an admin every tenant with a policy (and its own).
async function tenantUsages() {
  const names = new Set([session.me.tenant]);
  if (session.me.role === "admin") {
    (await api("/v1/admin/tenants")).tenants.forEach((t) => names.add(t.tenant));
  }
  return Promise.all([...names].sort().map((t) => api(`/v1/tenants/${encodeURIComponent(t)}/usage`)));
}

const USAGE_ROWS = [
  ["USD today", "usd_day", "budget_usd_per_day", usd],
  ["USD this month", "usd_month", "budget_usd_per_month", usd],
  ["Tokens today", "tokens_day", "tokens_per_day", fmt],
];

function usageTable(usages) {
  const rows = [];
  for (const u of usages) {
    for (const [what, key, limitKey, show] of USAGE_ROWS) {
      const limit = u.limits[limitKey];
      const spent = u.spent[key];
      const pct = limit == null ? null
        : limit === 0 ? 100 : Math.min(100, Math.round((spent / limit) * 1000) / 10);
      rows.push(h("tr", { "data-tenant": u.tenant },
        h("td", {}, u.tenant), h("td", {}, what), h("td", {}, show(spent)),
        h("td", {}, limit == null ? "no limit" : show(limit)),
        h("td", {}, pct == null ? "" : h("div", { class: "bar", role: "progressbar",
          "aria-label": `${u.tenant} ${what} of its limit`, "aria-valuemin": 0,
          "aria-valuemax": 100, "aria-valuenow": pct }, fill(pct)))));
    }
  }
  return table(["Tenant", "What", "Spent", "Limit", "Of the limit"], rows);
}

function queueTable(queues) {
  return table(["Priority", "Queued", "Running", "Oldest wait", "Consumer lag"],
    queues.map((q) => h("tr", {}, h("td", {}, q.priority), h("td", {}, fmt(q.queued)),
      h("td", {}, fmt(q.running)), h("td", {}, seconds(q.oldest_wait_s)),
      h("td", {}, fmt(q.consumer_lag)))));
}

// --- jobs -----------------------------------------------------------------------------------

function select(name, label, options, value) {
  return h("label", {}, label, h("select", { name, id: `f-${name}` },
    h("option", { value: "" }, "any"),
    options.map((o) => h("option", { value: o, selected: o === value }, o))));
}

export function jobs(view) {
  const params = new URLSearchParams(location.search);
  const form = h("form", { class: "filters", role: "search" },
    select("status", "Status", STATUSES, params.get("status")),
    select("priority", "Priority", PRIORITIES, params.get("priority")),
    h("label", {}, "Batch", h("input", { name: "batch_id", id: "f-batch", value: params.get("batch_id") ?? "", size: 20 })),
    h("button", { type: "submit" }, "Filter"),
    h("label", {}, "Job id", h("input", { name: "job_id", id: "f-job", size: 20, placeholder: "go to a job" })),
  );
  const list = h("div", { id: "job-list" });
  const more = h("div", { class: "actions" });
  view.replaceChildren(h("h1", {}, "Jobs"), form, list, more);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const id = String(data.get("job_id") ?? "").trim();
    if (id) return navigate(`/ui/jobs/${encodeURIComponent(id)}`);
    const q = new URLSearchParams();
    for (const k of ["status", "priority", "batch_id"]) if (data.get(k)) q.set(k, data.get(k));
    navigate(`/ui/jobs${q.size ? `?${q}` : ""}`);
  });
  const query = new URLSearchParams();
  for (const k of ["status", "priority", "batch_id"]) if (params.get(k)) query.set(k, params.get(k));
  let cursors = [null];
  const load = async () => {
    const q = new URLSearchParams(query);
    q.set("limit", "50");
    if (cursors[cursors.length - 1]) q.set("cursor", cursors[cursors.length - 1]);
    const page = await api(`/v1/jobs?${q}`);
    list.replaceChildren(table(["Job", "Status", "Priority", "Model", "Tokens", "Queued", "Cost", "Batch"],
      page.jobs.map((j) => h("tr", {},
        h("td", {}, link(`/ui/jobs/${j.job_id}`, j.job_id)), h("td", {}, status(j.status)),
        h("td", {}, j.priority), h("td", {}, j.model), h("td", {}, fmt(j.token_count)),
        h("td", {}, when(j.queued_at)), h("td", {}, usd(j.cost_usd)),
        h("td", {}, j.batch_id ? link(`/ui/jobs?batch_id=${j.batch_id}`, j.batch_id.slice(0, 8)) : "–"))),
      "No job matches."));
    more.replaceChildren(
      cursors.length > 1 ? actionButton("Newer", async () => { cursors.pop(); await load(); }, "secondary") : "",
      page.next_cursor ? actionButton("Older", async () => { cursors.push(page.next_cursor); await load(); }, "secondary") : "",
    );
  };
  // The first page refreshes itself; older pages stay as they were read.
  return every(2000, async () => { if (cursors.length === 1) await load(); });
}

// --- one job --------------------------------------------------------------------------------

export function job(view, { id }) {
  const output = h("pre", { class: "output", id: "output", "aria-live": "polite", "aria-label": "Output" });
  const head = h("div", { id: "job-head" });
  const actions = h("div", { class: "actions" });
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const facts = h("dl", { class: "facts", id: "facts" });
  view.replaceChildren(h("h1", {}, "Job ", h("code", {}, id)), head, actions,
    h("h2", {}, "Output"), output,
    h("div", { class: "cols" },
      h("section", {}, h("h2", {}, "Timeline"), timeline),
      h("section", {}, h("h2", {}, "Numbers"), facts)));
  let source = null;
  let ended = null; // the terminal event, once seen
  let attempt = null;
  let stopped = false;

  const render = (s) => {
    head.replaceChildren(h("p", {}, "Status ", h("span", { id: "job-status" }, status(s.status)),
      ` · ${s.priority} · ${s.model} (${s.provider}) · attempt ${s.attempt}`,
      s.batch_id ? h("span", {}, " · batch ", link(`/ui/jobs?batch_id=${s.batch_id}`, s.batch_id)) : ""));
    const finished = FINISHED.has(s.status);
    actions.replaceChildren(
      finished ? "" : actionButton("Cancel", async () => {
        await api(`/v1/jobs/${id}/cancel`, { method: "POST", body: {} });
      }, "danger"),
      session.admin && ["failed", "cancelled"].includes(s.status) ? actionButton("Retry", async () => {
        await api(`/v1/jobs/${id}/retry`, { method: "POST" });
        // Until the job state has the new submission, a stream would start at the old attempt.
        const deadline = Date.now() + 30000;
        while (FINISHED.has((await api(`/v1/jobs/${id}`)).status) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 300));
        }
        restream();
      }) : "",
    );
    const itl = ended?.type === "completed" ? ended.data.itl_ms : null;
    const rows = [
      ["Queue wait", ms(s.queue_wait_ms)], ["Time to first token", ms(s.ttft_ms)],
      ["Inter-token p50", ms(itl?.p50)], ["Inter-token p99", ms(itl?.p99)],
      ["Duration", ms(s.duration_ms)], ["Tokens / s", fmt(s.tokens_per_s, 1)],
      ["Tokens", fmt(s.token_count)],
      ["Usage", s.usage ? `${fmt(s.usage.prompt_tokens)} in · ${fmt(s.usage.completion_tokens)} out` : "–"],
      ["Cost", usd(s.cost_usd)],
      ["Error", s.error_message ? `${s.error_kind}: ${s.error_message}` : "–"],
    ];
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  };

  const onEvent = (type, ev) => {
    const data = JSON.parse(ev.data);
    if (attempt !== null && data.attempt !== attempt && type !== "queued") {
      output.textContent = ""; // a retried job: the new attempt's output replaces the old
    }
    attempt = data.attempt;
    if (type === "token") { output.append(data.text); return; }
    if (type === "completed" && output.textContent !== data.content) output.textContent = data.content;
    timeline.append(h("li", {}, h("strong", {}, type), ` ${when(data.ts)}`,
      data.message ? ` — ${data.error_kind ?? ""} ${data.message}` : "",
      type === "cancelled" ? ` by ${data.by}` : ""));
    if (TERMINAL.has(type)) { ended = { type, data }; source?.close(); refresh().catch(showError); }
  };

  let lastId = null; // the last event's id (a Kafka offset): where a reopened stream resumes
  let generation = 0; // a stream opened by an older call of open() is not reopened
  let retryMs = 1000;
  const open = async () => {
    const mine = ++generation;
    source?.close();
    source = null;
    let grant;
    try {
      grant = await api(`/v1/jobs/${id}/stream-token`, { method: "POST" });
    } catch (err) {
      showError(err);
      if (!stopped && mine === generation) setTimeout(() => { if (mine === generation) open(); }, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
      return;
    }
    if (stopped || mine !== generation) return;
    const query = new URLSearchParams({ token: grant.stream_token });
    if (lastId !== null) query.set("last_event_id", lastId);
    // EventSource resumes by itself (Last-Event-ID) when a connection drops; when it gives
    // up (its token expired, the server refused), a new token reopens it where it stopped.
    const es = new EventSource(`${grant.stream_url}?${query}`);
    source = es;
    for (const type of ["queued", "started", "token", "retrying", "completed", "failed", "cancelled"]) {
      es.addEventListener(type, (ev) => {
        retryMs = 1000;
        lastId = ev.lastEventId || lastId;
        onEvent(type, ev);
      });
    }
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED && !ended && !stopped && mine === generation) {
        setTimeout(() => { if (!ended && !stopped && mine === generation) open(); }, retryMs);
        retryMs = Math.min(retryMs * 2, 15000);
      }
    });
  };
  const restream = () => {
    ended = null; attempt = null; lastId = null;
    output.textContent = ""; timeline.replaceChildren();
    open();
  };
  const refresh = async () => render(await api(`/v1/jobs/${id}`));
  open();
  const stopPoll = every(2000, refresh);
  return () => { stopped = true; generation++; stopPoll(); source?.close(); };
}

// --- batches --------------------------------------------------------------------------------

export function batches(view) {
  const form = h("form", { class: "filters" },
    h("label", {}, "Batch id", h("input", { name: "batch_id", id: "f-batch-id", size: 36 })),
    h("button", { type: "submit" }, "Show"));
  const list = h("div", { id: "batch-list" });
  view.replaceChildren(h("h1", {}, "Batches"),
    h("p", { class: "muted" }, "The batches of the newest 500 jobs, or one by its id."), form, list);
  const asked = new Set();
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = String(new FormData(form).get("batch_id") ?? "").trim();
    if (id) asked.add(id);
  });
  const known = new Map(); // batch id → its summary; a finished batch is not read again
  const read = async (b) => {
    const seen = known.get(b);
    if (seen && FINISHED.has(seen.status)) return seen;
    const got = await api(`/v1/batches/${b}`).catch(() => null);
    if (got) known.set(b, got);
    return got;
  };
  return every(3000, async () => {
    const recent = await api("/v1/jobs?limit=500");
    const ids = [...asked, ...new Set(recent.jobs.map((j) => j.batch_id).filter(Boolean))];
    const found = await Promise.all([...new Set(ids)].slice(0, 50).map(read));
    list.replaceChildren(table(["Batch", "Status", "Progress", "Counts", "ETA", "Cost", ""],
      found.filter(Boolean).map(batchRow), "No batch yet."));
  });
}

// The filled part of a bar, sized through the CSSOM: the page's CSP allows no inline style.
function fill(pct) {
  const span = document.createElement("span");
  span.style.width = `${pct}%`;
  return span;
}

function batchRow(b) {
  const c = b.counts;
  const pct = Math.round(b.progress_pct * 10) / 10;
  const done = FINISHED.has(b.status) || pct >= 100;
  return h("tr", { "data-batch": b.batch_id },
    h("td", {}, link(`/ui/jobs?batch_id=${b.batch_id}`, b.batch_id)), h("td", {}, status(b.status)),
    h("td", {}, h("div", { class: "bar", role: "progressbar", "aria-label": `batch ${b.batch_id} progress`,
      "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct },
      fill(pct)), `${pct} % of ${fmt(b.total)}`),
    h("td", {}, `${c.succeeded} ok · ${c.failed} failed · ${c.cancelled} cancelled · ${c.running} running · ${c.queued} queued`),
    h("td", {}, seconds(b.eta_s)), h("td", {}, usd(b.cost_usd)),
    h("td", {}, done ? "" : h("span", { class: "actions" },
      b.status === "paused"
        ? actionButton("Resume", () => api(`/v1/batches/${b.batch_id}/resume`, { method: "POST" }), "secondary")
        : actionButton("Pause", () => api(`/v1/batches/${b.batch_id}/pause`, { method: "POST" }), "secondary"),
      actionButton("Cancel", () => api(`/v1/batches/${b.batch_id}/cancel`, { method: "POST" }), "danger"))));
}

// --- queues and workers ---------------------------------------------------------------------

export function queues(view) {
  const q = h("div", { id: "queue-table" });
  const w = h("div", { id: "worker-table" });
  view.replaceChildren(h("h1", {}, "Queues and workers"), q, h("h2", {}, "Workers"), w);
  return every(2000, async () => {
    const [qs, ws] = await Promise.all([api("/v1/queues"), api("/v1/workers")]);
    q.replaceChildren(queueTable(qs.queues));
    w.replaceChildren(h("p", { class: "muted" }, `Group ${ws.group}: ${ws.state.toLowerCase()}`),
      table(["Worker", "Host", "Partitions"], ws.members.map((m) => h("tr", {},
        h("td", {}, m.client_id), h("td", {}, m.host ?? "–"),
        h("td", { class: "wrap" }, Object.entries(m.partitions).map(([t, ps]) => `${t} [${ps.join(", ")}]`).join("; ")))),
      "No worker is in the group."));
  });
}

// --- analytics ------------------------------------------------------------------------------

export function analytics(view) {
  const charts = h("div", { class: "charts", id: "charts" });
  const latency = h("div", { id: "latency" });
  view.replaceChildren(h("h1", {}, "Analytics"), charts, h("h2", {}, "Latency by model"), latency);
  return every(30000, async () => {
    const [byModel, byTenant, byDay, tp, lat] = await Promise.all([
      api("/v1/analytics/cost?group_by=model"), api("/v1/analytics/cost?group_by=tenant"),
      api("/v1/analytics/cost?group_by=day"), api("/v1/analytics/throughput"),
      api("/v1/analytics/latency?group_by=model"),
    ]);
    const cost = (rows, key) => rows.slice(0, 12).map((r) => [r[key], Number(r.cost_usd)]);
    const minutes = tp.rows.map((r) => minuteLabel(r.t));
    charts.replaceChildren(
      figure("Cost by model (USD)", bars(cost(byModel.rows, "model"), { label: "cost by model", digits: 4, unit: "$" })),
      figure("Cost by tenant (USD)", bars(cost(byTenant.rows, "tenant"), { label: "cost by tenant", digits: 4, unit: "$" })),
      figure("Cost by day (USD)", bars(cost(byDay.rows, "day"), { label: "cost by day", digits: 4, unit: "$" })),
      figure("Tokens per second, per minute", line(tp.rows.map((r) => r.tokens_per_s), { label: "tokens per second", height: 120, labels: minutes })),
      figure("Jobs finished per minute", line(tp.rows.map((r) => r.jobs), { label: "jobs per minute", height: 120, labels: minutes, color: "#1e7a3c" })),
      ...[["ttft_ms", "Time to first token"], ["itl_ms", "Inter-token latency"], ["duration_ms", "Duration"]].map(
        ([key, title]) => figure(`${title} p50 / p90 / p99 (ms)`, bars(
          lat.rows.slice(0, 4).flatMap((r) => ["p50", "p90", "p99"].map((p) => [`${r.model} ${p}`, r[key][p]])),
          { label: title.toLowerCase(), digits: 0 }))),
    );
    const q = (x) => `${ms(x.p50)} · ${ms(x.p90)} · ${ms(x.p99)}`;
    latency.replaceChildren(table(["Model", "Jobs", "TTFT p50 · p90 · p99", "ITL p50 · p90 · p99", "Duration p50 · p90 · p99"],
      lat.rows.map((r) => h("tr", {}, h("td", {}, r.model), h("td", {}, fmt(r.jobs)),
        h("td", {}, q(r.ttft_ms)), h("td", {}, q(r.itl_ms)), h("td", {}, q(r.duration_ms)))),
      "No finished job yet."));
  });
}

// --- dead letters ---------------------------------------------------------------------------

export function deadLetters(view) {
  const list = h("div", { id: "dead-letter-list" });
  view.replaceChildren(h("h1", {}, "Dead letters"), list);
  if (!session.admin) {
    list.replaceChildren(h("p", {}, "Dead letters are for admins."));
    return undefined;
  }
  return every(5000, async () => {
    const { dead_letters: letters } = await api("/v1/admin/dead-letters?limit=100");
    list.replaceChildren(table(["When", "Job", "Kind", "Error", "Source", ""],
      letters.map((d) => h("tr", {}, h("td", {}, when(d.ts)),
        h("td", {}, d.job_id && d.command ? link(`/ui/jobs/${d.job_id}`, d.job_id) : d.job_id ?? "–"),
        h("td", {}, d.error_kind), h("td", { class: "wrap" }, d.error, d.raw ? h("div", { class: "muted" }, `value: ${d.raw.slice(0, 300)}`) : ""), h("td", {}, d.source),
        h("td", {}, d.command ? actionButton("Retry", () => api(`/v1/jobs/${d.job_id}/retry`, { method: "POST" })) : ""))),
      "No dead letters."));
  });
}

// Set by app.js: moves to a path inside the dashboard without a page load.
export let navigate = (path) => { location.assign(path); };
export function setNavigate(fn) { navigate = fn; }
