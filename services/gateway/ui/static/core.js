// The dashboard's plumbing: the API key, calls to the API, elements, times.
const KEY = "tokenrelay.api_key";

export const session = {
  key: sessionStorage.getItem(KEY),
  me: null, // {tenant, role} from GET /v1/me
  get admin() { return this.me?.role === "admin"; },
  signIn(key) { this.key = key; sessionStorage.setItem(KEY, key); },
  signOut() { this.key = null; this.me = null; sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message ? `${e.message}${e.field ? ` (${e.field})` : ""}` : `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
  }
}

// fetch with the API key; JSON in and out; a 4xx/5xx throws ApiError with the API's message.
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: `Bearer ${session.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, signal,
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// h("td", {class: "x"}, "text", child…): an element; attributes starting with "on" are listeners.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function table(headers, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

export function status(s) {
  return h("span", { class: `status status-${s}` }, s);
}

// µs since the epoch → local time; null → "–".
export function when(us) {
  if (!us) return "–";
  return new Date(us / 1000).toLocaleString();
}

export function ms(v) {
  if (v === null || v === undefined) return "–";
  return v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

export function usd(v) {
  if (v === null || v === undefined) return "–";
  return `$${Number(v).toFixed(v >= 1 ? 2 : 6)}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function link(href, text) {
  return h("a", { href, "data-link": true }, text);
}

export function showError(err) {
  const banner = document.getElementById("error");
  banner.textContent = err ? String(err.message ?? err) : "";
  banner.hidden = !err;
}

// Runs `fn` now and every `ms` until the page changes (the returned function stops it).
export function every(msInterval, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try { await fn(); showError(null); } catch (err) { if (!stopped) showError(err); }
    if (!stopped) timer = setTimeout(tick, msInterval);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// A button that runs `action`, disabled while it runs; errors go to the banner.
export function actionButton(text, action, cls = "") {
  const b = h("button", { type: "button", class: cls });
  b.textContent = text;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await action(); showError(null); } catch (err) { showError(err); } finally { b.disabled = false; }
  });
  return b;
}
