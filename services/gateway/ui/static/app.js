// The dashboard: sign in with an API key, then one page per path under /ui.
import { api, session, showError } from "./core.js";
import * as pages from "./pages.js";

const ROUTES = [
  [/^\/ui\/?$/, "overview", pages.overview],
  [/^\/ui\/jobs\/?$/, "jobs", pages.jobs],
  [/^\/ui\/jobs\/(?<id>[^/]+)$/, "jobs", pages.job],
  [/^\/ui\/batches\/?$/, "batches", pages.batches],
  [/^\/ui\/queues\/?$/, "queues", pages.queues],
  [/^\/ui\/analytics\/?$/, "analytics", pages.analytics],
  [/^\/ui\/dead-letters\/?$/, "dead-letters", pages.deadLetters],
];

const view = document.getElementById("view");
const signin = document.getElementById("signin");
let stopPage = null;

function navigate(path) {
  history.pushState(null, "", path);
  show();
}
pages.setNavigate(navigate);

function show() {
  stopPage?.();
  stopPage = null;
  showError(null);
  if (!session.me) { start(); return; }
  const path = location.pathname;
  const found = ROUTES.map(([re, name, page]) => [re.exec(path), name, page]).find(([m]) => m);
  for (const a of document.querySelectorAll("nav a[data-page]")) {
    a.toggleAttribute("aria-current", found?.[1] === a.dataset.page);
    if (found?.[1] === a.dataset.page) a.setAttribute("aria-current", "page");
  }
  if (!found) {
    view.replaceChildren(Object.assign(document.createElement("h1"), { textContent: "Not found" }));
    return;
  }
  const [match, name, page] = found;
  document.title = `${name} · tokenrelay`;
  stopPage = page(view, match.groups ?? {}) ?? null;
}

function renderWho() {
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!session.me) return;
  const out = document.createElement("button");
  out.type = "button";
  out.className = "secondary";
  out.textContent = "Sign out";
  out.addEventListener("click", () => { session.signOut(); start(); });
  who.append(`${session.me.tenant} · ${session.me.role}`, out);
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !session.admin;
}

async function start() {
  stopPage?.();
  stopPage = null;
  session.me = null;
  if (session.key) {
    try {
      session.me = await api("/v1/me");
    } catch (err) {
      if (err.status === 401) session.signOut(); // a key that is wrong; not one we could not check
      document.getElementById("signin-error").textContent = err.message;
    }
  }
  renderWho();
  signin.hidden = Boolean(session.me);
  view.hidden = !session.me;
  if (session.me) show();
  else { view.replaceChildren(); document.getElementById("api_key").focus(); }
}

signin.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = new FormData(signin).get("api_key").trim();
  if (!key) return;
  session.signIn(key);
  signin.reset();
  document.getElementById("signin-error").textContent = "";
  start();
});

// Links inside the dashboard change the page without a load; others behave as links do.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-link]");
  if (!a || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", show);

// /ui#key=<key> signs in (for links), also when only the hash changed; the key leaves
// the address bar at once.
function keyFromHash() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (!key) return false;
  session.signIn(key);
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}
window.addEventListener("hashchange", () => { if (keyFromHash()) start(); });
keyFromHash();
start();
