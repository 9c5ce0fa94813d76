"""``tokenrelay jobs …``, ``tokenrelay batch …`` and ``tokenrelay clean``: the API from a shell.

Each is one or two calls of the public face (``cli_client``); what they print
is built by plain functions (``job_rows``, ``job_detail``, ``batch_line``)
that the tests call too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.cli_client import (
    JsonOption,
    KeyOption,
    UrlOption,
    answer,
    api_client,
    err,
    print_json,
    print_stream,
    report,
)

jobs_app = typer.Typer(help="Jobs: list, show, watch, cancel, retry.", no_args_is_help=True)
batch_app = typer.Typer(
    help="Batches: submit a JSONL file, status, pause, resume, cancel.", no_args_is_help=True
)

FINAL_BATCH = frozenset({"succeeded", "failed", "cancelled"})
POLL_S = 0.5
"""How often ``batch submit --watch`` and ``batch status --watch`` read the batch."""
UNSEEN_S = 30.0
"""How long ``--watch`` waits for a batch it just submitted to appear in the job state."""

JOB_COLUMNS = ("job_id", "status", "priority", "model", "tokens", "cost_usd", "queued")


def _when(us: int | None) -> str:
    if not us:
        return "—"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def job_rows(jobs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per job, in ``JOB_COLUMNS`` order."""
    return [
        (
            j["job_id"],
            j["status"],
            j.get("priority") or "—",
            j.get("model") or "—",
            str(j.get("token_count") or 0),
            f"{j['cost_usd']:.6f}" if j.get("cost_usd") is not None else "—",
            _when(j.get("queued_at")),
        )
        for j in jobs
    ]


def job_detail(job: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) pairs of a job's state worth reading, in a reading order."""
    fields = [
        ("job_id", job["job_id"]),
        ("status", job["status"]),
        ("priority", job.get("priority")),
        ("model", f"{job.get('provider') or '?'} / {job.get('model') or '?'}"),
        ("batch", job.get("batch_id")),
        ("attempt", job.get("attempt")),
        ("queued", _when(job.get("queued_at"))),
        ("started", _when(job.get("started_at"))),
        ("finished", _when(job.get("finished_at"))),
        ("queue wait ms", job.get("queue_wait_ms")),
        ("ttft ms", job.get("ttft_ms")),
        ("duration ms", job.get("duration_ms")),
        ("tokens", job.get("token_count")),
        ("tokens/s", job.get("tokens_per_s")),
        ("cost usd", job.get("cost_usd")),
        ("error", " ".join(filter(None, [job.get("error_kind"), job.get("error_message")]))),
        ("cancelled by", job.get("cancelled_by")),
    ]
    return [(name, str(value)) for name, value in fields if value not in (None, "", "—")]


def batch_line(batch: dict[str, Any]) -> str:
    """A batch's state in one line: status, counts, progress, ETA, cost."""
    counts = batch.get("counts") or {}
    done = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    going = batch.get("eta_s") is not None and batch["status"] not in FINAL_BATCH
    eta = f", ETA {batch['eta_s']:.0f} s" if going else ""
    cost = f", ${batch['cost_usd']:.6f}" if batch.get("cost_usd") is not None else ""
    return (
        f"batch {batch['batch_id']} {batch['status']}: {batch.get('progress_pct', 0):.1f} % "
        f"of {batch.get('total', 0)} ({done or 'nothing yet'}){eta}{cost}"
    )


def _finished(batch: dict[str, Any]) -> int:
    counts = batch.get("counts") or {}
    return sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, …")] = None,
    priority: Annotated[str | None, typer.Option()] = None,
    batch: Annotated[str | None, typer.Option(help="jobs of this batch id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the last page")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """The newest jobs (your tenant's; an admin sees all), a page at a time."""
    params = {"status": status, "priority": priority, "batch_id": batch, "cursor": cursor}
    query = {k: v for k, v in params.items() if v is not None} | {"limit": limit}
    with api_client(url, api_key) as client:
        page = answer(client.get("/v1/jobs", params=query))
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{len(page['jobs'])} jobs")
    table.add_column(JOB_COLUMNS[0], no_wrap=True, min_width=36)  # an id is copied whole
    for name in JOB_COLUMNS[1:]:
        table.add_column(name)
    for row in job_rows(page["jobs"]):
        table.add_row(*row)
    Console().print(table)
    if page.get("next_cursor"):
        err.print(f"more: --cursor {page['next_cursor']}")


@jobs_app.command("show")
def show_job(
    job_id: Annotated[str, typer.Argument()],
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """One job's state: status, timings, usage, cost, error."""
    with api_client(url, api_key) as client:
        job = answer(client.get(f"/v1/jobs/{job_id}"))
    if as_json:
        print_json(job)
        return
    table = Table(show_header=False, box=None)
    for name, value in job_detail(job):
        table.add_row(name, value)
    Console().print(table)


@jobs_app.command("watch")
def watch_job(
    job_id: Annotated[str, typer.Argument()],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Print a job's tokens as they arrive (from its start, if it already ran)."""
    with api_client(url, api_key, read_timeout=None) as client:
        print_stream(client, f"/v1/jobs/{job_id}/events")


@jobs_app.command("cancel")
def cancel_job(
    job_id: Annotated[str, typer.Argument()],
    reason: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Cancel a job (yours, or any as an admin)."""
    body = {"reason": reason} if reason else None
    with api_client(url, api_key) as client:
        out = answer(client.post(f"/v1/jobs/{job_id}/cancel", json=body), ok=(202,))
    report(out, as_json, f"job {job_id}: {out['status']}")


@jobs_app.command("retry")
def retry_job(
    job_id: Annotated[str, typer.Argument()],
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Run a failed or cancelled job again (admin)."""
    with api_client(url, api_key) as client:
        out = answer(client.post(f"/v1/jobs/{job_id}/retry"), ok=(202,))
    report(out, as_json, f"job {job_id}: {out['status']}")


def _watch_batch(client: Any, batch_id: str, total: int) -> dict[str, Any]:
    """A progress bar with the ETA until the batch ended; its last state."""
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    unseen_until = time.monotonic() + UNSEEN_S
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"batch {batch_id[:8]}", total=total)
        while True:
            r = client.get(f"/v1/batches/{batch_id}")
            if r.status_code == 404 and time.monotonic() < unseen_until:
                time.sleep(POLL_S)  # accepted, not yet in the job state: read again
                continue
            batch = answer(r)
            bar.update(task, completed=_finished(batch), description=f"batch {batch['status']}")
            if batch["status"] in FINAL_BATCH:
                return batch  # type: ignore[no-any-return]
            time.sleep(POLL_S)


@batch_app.command("submit")
def submit_batch(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="one job per line")],
    watch: Annotated[bool, typer.Option("--watch", help="a progress bar until it ends")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Submit a JSONL file of jobs as one batch."""
    with api_client(url, api_key) as client:
        accepted = answer(
            client.post(
                "/v1/batches",
                content=file.read_bytes(),
                headers={"Content-Type": "application/x-ndjson"},
            ),
            ok=(202,),
        )
        batch_id, total = accepted["batch_id"], len(accepted["job_ids"])
        if not watch:
            report(accepted, as_json, f"batch {batch_id}: {total} jobs")
            return
        err.print(f"batch {batch_id}: {total} jobs")
        final = _watch_batch(client, batch_id, total)
    report(final, as_json, batch_line(final))
    if final["status"] != "succeeded":
        raise typer.Exit(1)


@batch_app.command("status")
def batch_status(
    batch_id: Annotated[str, typer.Argument()],
    watch: Annotated[bool, typer.Option("--watch", help="a progress bar until it ends")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """A batch's counts, progress, ETA and cost."""
    with api_client(url, api_key) as client:
        batch = answer(client.get(f"/v1/batches/{batch_id}"))
        if watch and batch["status"] not in FINAL_BATCH:
            batch = _watch_batch(client, batch_id, batch["total"])
    print_json(batch) if as_json else Console().print(batch_line(batch), soft_wrap=True)


BATCH_INSTRUCTIONS = {
    "pause": "Hold the batch's jobs that have not started.",
    "resume": "Release a paused batch's jobs.",
    "cancel": "End every unfinished job of the batch.",
}
"""``tokenrelay batch <action> ID``: each posts ``/v1/batches/ID/<action>``."""


def _instruction(action: str) -> Callable[..., None]:
    def instruct(
        batch_id: Annotated[str, typer.Argument()],
        as_json: JsonOption = False,
        url: UrlOption = None,
        api_key: KeyOption = None,
    ) -> None:
        with api_client(url, api_key) as client:
            out = answer(client.post(f"/v1/batches/{batch_id}/{action}"), ok=(202,))
        report(out, as_json, f"batch {batch_id}: {out['status']}")

    return instruct


for _action, _help in BATCH_INSTRUCTIONS.items():
    batch_app.command(_action, help=_help)(_instruction(_action))


def clean(
    older_than: Annotated[str, typer.Option(help="3600, 30m, 12h or 7d")] = "7d",
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Remove finished jobs older than --older-than from the job state (admin)."""
    with api_client(url, api_key) as client:
        out = answer(client.post("/v1/admin/clean", params={"older_than": older_than}))
    report(
        out, as_json, f"removed {out['removed']} finished jobs older than {out['older_than_s']} s"
    )
