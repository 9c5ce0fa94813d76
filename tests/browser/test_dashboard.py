"""The dashboard at ``/ui`` in a real browser (Debian's Chromium driven by Playwright)
against a real stack: the aggregator, a worker and the public face as ``make up`` runs it.

What a user checks: signing in (by keyboard, and by a ``#key=`` link), a submitted
job in the list and its page streaming tokens live to ``succeeded``, cancelling a
running job from its page, a batch's bar reaching 100 %, one tenant seeing none
of another's jobs and no admin action, the queues, analytics and dead-letter
pages with real data, a phone's width, no console error, and an ``EventSource``
on another origin: streamed whole when that origin is allowed, refused when not.
Each page's screenshot is kept under the stack's data dir (``screenshots/``).
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import httpx
import pytest

from schemas.jobs import Priority
from services.core.settings import Settings
from services.localdev.kafka import free_port
from tests.conftest import ADMIN, ALICE, BOB, fresh_settings
from tests.support.browser import chromium
from tests.support.public_stack import public_stack

pytestmark = pytest.mark.kafka

WAIT_MS = 60_000


@dataclass
class Stack:
    url: str
    settings: Settings
    shots: Path
    allowed_origin: str
    other_origin: str

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def submit(self, headers: dict[str, str] = ALICE, **body: Any) -> str:
        with self.api() as client:
            r = client.post("/v1/jobs", json={"prompt": "p", **body}, headers=headers)
            assert r.status_code == 202, r.text
            job_id: str = r.json()["job_id"]
            return job_id

    def job(self, job_id: str, headers: dict[str, str] = ALICE) -> dict[str, Any]:
        with self.api() as client:
            r = client.get(f"/v1/jobs/{job_id}", headers=headers)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

    def ended(self, job_id: str, headers: dict[str, str] = ALICE) -> dict[str, Any]:
        give_up = time.monotonic() + 60
        while (state := self.job(job_id, headers))["status"] not in {
            "succeeded",
            "failed",
            "cancelled",
        }:
            assert time.monotonic() < give_up, state
            time.sleep(0.2)
        return state


class OtherApp(http.server.BaseHTTPRequestHandler):
    """A web app on another origin: its page opens an EventSource on the API with a token."""

    page = b"""<!doctype html><meta charset="utf-8"><title>other app</title><script>
const q = new URLSearchParams(location.search);
window.got = []; window.outcome = null;
const es = new EventSource(q.get("stream"));
for (const t of ["queued", "started", "token", "completed", "failed", "cancelled"]) {
  es.addEventListener(t, (ev) => {
    window.got.push([t, JSON.parse(ev.data)]);
    if (["completed", "failed", "cancelled"].includes(t)) { window.outcome = t; es.close(); }
  });
}
es.onerror = () => {
  if (es.readyState === EventSource.CLOSED && !window.outcome) window.outcome = "refused";
};
</script>"""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_other_app() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), OtherApp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, chdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    allowed, allowed_origin = serve_other_app()
    other, other_origin = serve_other_app()
    root = tmp_path_factory.mktemp("dashboard")
    settings = fresh_settings(
        kafka_bootstrap,
        chdb_url,
        root / "data",
        state_store="memory://",
        cors_origins=allowed_origin,
    )
    shots = settings.data_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    before = set(threading.enumerate())
    try:
        with public_stack(settings, root) as public:
            yield Stack(public.url, settings, shots, allowed_origin, other_origin)
    finally:
        for server in (allowed, other):
            server.shutdown()
            server.server_close()
    leaked = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert not [t for t in leaked if t.is_alive()], f"threads leaked: {leaked}"


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The stack serves every test of the module, and the threads its worker starts on
    demand live as long as it does: leaks are checked when it stops (above)."""
    yield


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


HTTP_FAILURE = "Failed to load resource: the server responded with a status of"
"""Chromium's console line for every answer over 399: the page shows those in its banner
(a test asks for another tenant's job on purpose; a part may answer 503 while it starts)."""


@dataclass
class Tab:
    """A browser tab with every console error and uncaught exception it had."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not e.startswith(HTTP_FAILURE)]


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    t = Tab(page)
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: t.errors.append(f"uncaught: {exc}"))
    yield t
    context.close()
    assert t.unexpected() == [], "the console had errors"


def sign_in_link(stack: Stack, path: str = "/ui", key: str = "key-alice") -> str:
    return f"{stack.url}{path}#key={key}"


def shoot(stack: Stack, tab: Tab, name: str) -> None:
    tab.page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=True)


def output_text(tab: Tab) -> str:
    text: str = tab.page.locator("#output").text_content() or ""
    return text


def test_sign_in_by_keyboard_and_watch_a_job_stream_token_by_token(stack: Stack, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{stack.url}/ui")
    page.get_by_label("API key").focus()
    page.keyboard.type("key-alice")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Overview").wait_for()
    assert "alice · user" in (page.locator("#who").text_content() or "")
    assert page.get_by_label("API key").is_hidden()
    assert page.get_by_role("link", name="Dead letters").is_hidden()

    job_id = stack.submit(max_tokens=200, provider_options={"tokens_per_s": 20})
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name=job_id).wait_for()
    shoot(stack, tab, "jobs")
    page.get_by_role("link", name=job_id).click()
    page.wait_for_url(f"**/ui/jobs/{job_id}")

    # Tokens arrive before the job ends: some output, and no terminal event yet.
    page.wait_for_function(
        "() => document.querySelector('#output').textContent.length > 0"
        " && !document.querySelector('#timeline').textContent.includes('completed')"
    )
    partial = output_text(tab)
    page.locator("#job-status", has_text="succeeded").wait_for()
    page.locator("#timeline", has_text="completed").wait_for()
    content = stack.ended(job_id)["content"]
    assert output_text(tab) == content and content.startswith(partial) and partial != content
    facts = page.locator("#facts").text_content() or ""
    assert "Time to first token" in facts and "Inter-token p99" in facts
    shoot(stack, tab, "job")


def test_cancel_a_running_job_from_its_page(stack: Stack, tab: Tab) -> None:
    job_id = stack.submit(max_tokens=400, provider_options={"tokens_per_s": 10})
    page = tab.page
    page.goto(sign_in_link(stack, f"/ui/jobs/{job_id}"))
    page.wait_for_function("() => document.querySelector('#output').textContent.length > 0")
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status", has_text="cancelled").wait_for()
    page.locator("#timeline", has_text="cancelled").wait_for()
    state = stack.ended(job_id)
    assert state["status"] == "cancelled" and state["cancelled_by"] == "alice"
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.get_by_role("button", name="Retry").count() == 0  # alice is no admin


def test_a_batch_progress_bar_reaches_100_percent(stack: Stack, tab: Tab) -> None:
    with stack.api() as client:
        jobs = [{"prompt": f"batch job {i}", "max_tokens": 8} for i in range(6)]
        r = client.post("/v1/batches", json={"jobs": jobs}, headers=ALICE)
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
    page = tab.page
    page.goto(sign_in_link(stack, "/ui/batches"))
    bar = page.get_by_role("progressbar", name=f"batch {batch_id} progress")
    bar.wait_for()
    page.wait_for_function(
        "(id) => document.querySelector(`[data-batch='${id}'] [role=progressbar]`)"
        "?.getAttribute('aria-valuenow') === '100'",
        arg=batch_id,
    )
    row = page.locator(f"[data-batch='{batch_id}']")
    assert "6 ok" in (row.text_content() or "")
    shoot(stack, tab, "batches")


def test_a_user_sees_no_other_tenants_job_and_no_admin_action(stack: Stack, tab: Tab) -> None:
    bobs = stack.submit(BOB, max_tokens=4)
    alices = stack.submit(max_tokens=400, provider_options={"tokens_per_s": 10})
    stack.ended(bobs, BOB)
    page = tab.page
    page.goto(sign_in_link(stack, "/ui/jobs"))
    page.get_by_role("link", name=alices).wait_for()
    assert page.get_by_role("link", name=bobs).count() == 0

    page.goto(sign_in_link(stack, f"/ui/jobs/{bobs}"))
    page.locator("#error", has_text=f"no job {bobs}").wait_for()
    assert "succeeded" not in (page.locator("#view").text_content() or "")

    page.goto(sign_in_link(stack, f"/ui/jobs/{alices}"))
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status", has_text="cancelled").wait_for()
    assert page.get_by_role("button", name="Retry").count() == 0
    assert page.get_by_role("link", name="Dead letters").is_hidden()

    # An admin sees every tenant's job and may retry the cancelled one: it runs again, and
    # the page streams the new attempt.
    page.goto(sign_in_link(stack, f"/ui/jobs/{alices}", key="key-admin"))
    page.get_by_role("button", name="Retry").click()
    page.locator("#timeline", has_text="started").wait_for()
    page.locator("#job-status", has_text=re.compile("queued|running")).wait_for()
    assert "cancelled" not in (page.locator("#timeline").text_content() or "")
    page.wait_for_function("() => document.querySelector('#output').textContent.length > 0")
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status", has_text="cancelled").wait_for()
    page.goto(sign_in_link(stack, "/ui/jobs", key="key-admin"))
    page.get_by_role("link", name=bobs).wait_for()
    assert page.get_by_role("link", name="Dead letters").is_visible()


def poison(settings: Settings) -> None:
    """A command no worker can read: the worker dead-letters it with its error."""
    producer = ck.Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(settings.topics.jobs[Priority.NORMAL], b"not a command", key=b"poison")
    assert producer.flush(30) == 0


def test_overview_queues_analytics_and_dead_letters_show_real_data(stack: Stack, tab: Tab) -> None:
    job_id = stack.submit(ADMIN, max_tokens=20)
    stack.ended(job_id, ADMIN)
    poison(stack.settings)
    with stack.api() as client:
        policy = {"tokens_per_day": 100_000, "budget_usd_per_day": 25}
        assert client.put("/v1/admin/tenants/alice", json=policy, headers=ADMIN).is_success
    page = tab.page
    page.goto(sign_in_link(stack, "/ui", key="key-admin"))
    page.locator("#overview-cards .card").first.wait_for()
    page.locator("#overview-queues td", has_text="normal").wait_for()
    # an admin sees each tenant with a policy against its limits, as bars where one is set
    alice = page.locator('#overview-usage tr[data-tenant="alice"]')
    alice.first.wait_for()
    assert alice.filter(has_text="Tokens today").filter(has_text="100,000").count() == 1
    assert alice.locator('[role="progressbar"]').count() == 2  # USD today, tokens today
    assert page.locator('#overview-usage tr[data-tenant="ops"]').count() == 3
    shoot(stack, tab, "overview")

    page.get_by_role("link", name="Queues").click()
    page.locator("#worker-table td", has_text=".jobs.normal").wait_for()
    shoot(stack, tab, "queues")

    page.get_by_role("link", name="Analytics").click()
    page.locator("#latency td", has_text="fake-1").wait_for()
    assert page.locator("#charts svg").count() >= 5
    assert page.locator("#charts", has_text="Cost by model").count() == 1
    shoot(stack, tab, "analytics")

    page.get_by_role("link", name="Dead letters").click()
    page.locator("#dead-letter-list td", has_text="poison").wait_for()
    letters = page.locator("#dead-letter-list").text_content() or ""
    assert "not a valid JobCommand" in letters and "value: not a command" in letters
    shoot(stack, tab, "dead-letters")


def test_it_reads_on_a_phone(stack: Stack, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        for path, ready in (("/ui", "#overview-cards .card"), ("/ui/jobs", "#job-list")):
            page.goto(sign_in_link(stack, path))
            page.locator(ready).first.wait_for()
            wider = page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
            assert not wider, f"{path} scrolls sideways on a phone"
        page.screenshot(path=str(stack.shots / "phone-jobs.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed origin", "other origin"])
def test_an_event_source_on_another_origin(stack: Stack, browser: Any, allowed: bool) -> None:
    with stack.api() as client:
        r = client.post("/v1/jobs", json={"prompt": "p", "max_tokens": 12}, headers=ALICE)
        assert r.status_code == 202, r.text
        accepted = r.json()
    stream = f"{stack.url}{accepted['stream_url']}?token={accepted['stream_token']}"
    origin = stack.allowed_origin if allowed else stack.other_origin
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{origin}/?{httpx.QueryParams({'stream': stream})}")
        page.wait_for_function("() => window.outcome !== null", timeout=WAIT_MS)
        outcome, got = page.evaluate("() => [window.outcome, window.got]")
    finally:
        context.close()
    if not allowed:
        assert (outcome, got) == ("refused", [])
        return
    content = stack.ended(accepted["job_id"])["content"]
    tokens = "".join(data["text"] for kind, data in got if kind == "token")
    assert outcome == "completed" and tokens == content
    assert [kind for kind, _ in got][:2] == ["queued", "started"]
