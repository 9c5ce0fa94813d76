"""The ``tokenrelay`` command."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import httpx
import orjson
import typer
from rich.console import Console

from schemas.jobs import Priority
from services.cli_client import (
    KeyOption,
    UrlOption,
    answer,
    api_client,
    err,
    print_json,
    print_stream,
)
from services.cli_cost import cost_app
from services.cli_jobs import batch_app, clean, jobs_app
from services.cli_tenants import keys_app, tenants_app
from services.cli_top import top
from services.core.errors import ConfigError, KafkaUnavailableError
from services.core.logs import setup_logging
from services.core.settings import Settings

app = typer.Typer(help="tokenrelay: LLM jobs on Kafka.", no_args_is_help=True)
kafka_app = typer.Typer(help="The local single-node Kafka broker.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(jobs_app, name="jobs")
app.add_typer(batch_app, name="batch")
app.add_typer(cost_app, name="cost")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.command()(clean)
app.command()(top)


def _settings() -> Settings:
    settings = Settings()
    setup_logging(settings.log_level)
    return settings


@app.command()
def serve(
    names: Annotated[list[str], typer.Argument(help="ingest, gateway, worker, analytics")],
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default TOKENRELAY_HTTP_PORT)")
    ] = None,
    fd: Annotated[
        int | None,
        typer.Option(help="Serve on this inherited listening socket instead of binding a port"),
    ] = None,
) -> None:
    """Run one or more services in this process."""
    from services.serve import serve as run

    run(_settings(), names, port, fd)


@app.command()
def aggregator(
    port: Annotated[
        int | None, typer.Option(help="Web port of the views (default TOKENRELAY_AGGREGATOR_PORT)")
    ] = None,
) -> None:
    """Run one instance of the job-state aggregator (Faust) in this process."""
    from services.aggregator.main import run

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"aggregator_port": port})
    run(settings)


@app.command()
def up() -> None:
    """Start the broker (unless one is configured) and a local stack; Ctrl-C stops it all."""
    from services.localdev.stack import up as run

    run(_settings())


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="read-only ClickHouse SQL, e.g. SELECT …")],
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Run read-only SQL on the analytics tables (admin key) and print a table."""
    from services.cli_tables import table_of

    with api_client(url, api_key) as client:
        body = answer(client.post("/v1/analytics/sql", json={"sql": query}))
    if as_json:
        sys.stdout.write(orjson.dumps(body).decode() + "\n")
        return
    Console().print(table_of(body["columns"], body["rows"]))
    err.print(f"{len(body['rows'])} rows")


@app.command()
def stats(
    minutes: Annotated[int, typer.Option(min=1, help="the window, up to now")] = 60,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Cost by model and throughput per minute over the last hour (or --minutes)."""
    import datetime as dt

    from services.cli_tables import stats_summary, table_of_dicts

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).isoformat()
    with api_client(url, api_key) as client:
        cost = answer(client.get("/v1/analytics/cost", params={"since": since}))["rows"]
        rate = answer(
            client.get("/v1/analytics/throughput", params={"since": since, "interval": "minute"})
        )["rows"]
    out = Console()
    out.print(table_of_dicts(cost, "cost by model (whole hours)"))
    out.print(table_of_dicts([r for r in rate if r["jobs"]], "throughput per minute"))
    out.print(stats_summary(cost, rate, minutes * 60))


@app.command()
def submit(
    prompt: Annotated[str, typer.Argument(help="The prompt")],
    priority: Annotated[Priority, typer.Option()] = Priority.NORMAL,
    model: Annotated[str | None, typer.Option()] = None,
    provider: Annotated[str | None, typer.Option(help="openai or fake")] = None,
    max_tokens: Annotated[int | None, typer.Option()] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="print tokens live")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Submit a job; with --stream, print its tokens as they arrive."""
    body = {
        "prompt": prompt,
        "priority": priority.value,
        "model": model,
        "provider": provider,
        "max_tokens": max_tokens,
    }
    with api_client(url, api_key, read_timeout=None) as client:
        r = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
        job = answer(r, ok=(202,))
        if not stream:
            print_json(job)
            return
        err.print(f"job {job['job_id']} ({job['priority']})")
        print_stream(client, job["stream_url"])


@app.command()
def bench(
    scenario: Annotated[
        str, typer.Argument(help="steady, max, ingest, batch, fanout, priority, all; or soak")
    ] = "steady",
    minutes: Annotated[float, typer.Option(help="soak: how long the load runs")] = 60.0,
    url: Annotated[str | None, typer.Option(help="a running stack; default: start our own")] = None,
    api_key: Annotated[str | None, typer.Option(help="an admin key of the stack at --url")] = None,
    jobs: Annotated[int | None, typer.Option(help="jobs (low ones in priority)")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="tokens per job")] = None,
    tokens_per_s: Annotated[float | None, typer.Option(help="pace per job; 0: unpaced")] = None,
    idle: Annotated[int | None, typer.Option(help="idle streams (fanout)")] = None,
    urgent: Annotated[int | None, typer.Option(help="urgent jobs (priority)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="jobs per POST /v1/batches")] = None,
    baseline: Annotated[bool, typer.Option(help="also run the no-Kafka baseline")] = True,
    provider: Annotated[
        str,
        typer.Option(
            help="fake: the worker's in-process provider; openai: the openai SDK against an "
            "OpenAI-compatible server the bench starts (the path real users take)"
        ),
    ] = "fake",
    freshness: Annotated[
        bool,
        typer.Option(
            help="the whole stack (aggregator, analytics sink): how long after a job's stream "
            "ended its state is final and its analytics row lands"
        ),
    ] = False,
    submit_stream: Annotated[
        bool,
        typer.Option(
            help="submit each watched job with Accept: text/event-stream and read its stream "
            "from that answer (one request, not a submission and then a GET)"
        ),
    ] = False,
    warmup: Annotated[
        float,
        typer.Option(
            help="seconds of unmeasured load (200 streams at 50 tokens/s) that warm our own "
            "broker's JVM before the first scenario; 0: none"
        ),
    ] = 90.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object on the last line of stdout")
    ] = False,
) -> None:
    """Measure the pipeline against the fake provider streamed with no Kafka (bench.harness);
    ``soak``: the whole stack under a steady load for ``--minutes``, memory and latency drift.

    The harness lives in ``bench/`` of a checkout, not in the installed package."""
    _find_bench()
    if scenario == "soak":
        _soak(minutes, jobs, max_tokens, tokens_per_s, as_json)
        return
    from bench.harness.cli import run
    from bench.harness.scenarios import Options

    options = Options(
        jobs=jobs,
        max_tokens=max_tokens,
        tokens_per_s=tokens_per_s,
        idle=idle,
        urgent=urgent,
        batch_size=batch_size,
        baseline=baseline,
        provider=provider,
        freshness=freshness,
        submit_stream=submit_stream,
    )
    try:
        run(scenario, url, api_key, options, as_json, warmup)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _find_bench() -> None:
    """Make ``bench`` importable from the checkout this package runs from, or say why not."""
    try:
        import bench  # noqa: F401
    except ImportError:
        checkout = Path(__file__).resolve().parents[1]
        if not (checkout / "bench" / "__init__.py").is_file():
            err.print(
                "[red]error:[/red] `tokenrelay bench` runs the harness in bench/ of a tokenrelay "
                "checkout (it is not part of the installed package); run it from a clone, "
                "after `make install`."
            )
            raise typer.Exit(2) from None
        sys.path.insert(0, str(checkout))


def _soak(
    minutes: float, jobs: int | None, tokens: int | None, pace: float | None, as_json: bool
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.soak import SoakOptions, table
    from bench.soak import run as soak

    defaults = SoakOptions()
    opts = SoakOptions(
        minutes=minutes,
        concurrent=jobs or defaults.concurrent,
        tokens=tokens or defaults.tokens,
        tokens_per_s=pace or defaults.tokens_per_s,
    )
    columns = (TextColumn("soak {task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("starting the stack …", total=1.0)
        result = soak(opts, lambda done, what: bar.update(task, completed=done, description=what))
    err.print(table(result))
    if as_json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")


BrokersOption = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        max=9,
        help="nodes (each broker + controller) on the bootstrap port and the ports after it; "
        "default: as started before, else TOKENRELAY_KAFKA_BROKERS (1)",
    ),
]


@kafka_app.command("start")
def kafka_start(brokers: BrokersOption = None) -> None:
    """Fetch Kafka's jars with mvn if needed, format storage once, start the nodes that are
    down, wait until every node answers."""
    from services.localdev.stack import local_cluster

    cluster = local_cluster(_settings(), brokers)
    started = cluster.start()
    for node in cluster.status():
        again = "started" if node.id in started else "already running"
        err.print(f"node {node.id} at {cluster.host}:{node.port}, pid {node.pid}: {again}")
    err.print(
        f"Kafka running at {cluster.bootstrap}, replication {cluster.replicas}, "
        f"logs {cluster.root}/node-*/broker.log"
    )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop every node of the local Kafka cleanly."""
    from services.localdev.stack import local_cluster

    if not local_cluster(_settings()).stop():
        err.print("no local broker was running")


@kafka_app.command("status")
def kafka_status(
    as_json: Annotated[bool, typer.Option("--json", help='print {"nodes": [...]}')] = False,
) -> None:
    """Each node of the local Kafka: its port, pid and whether it answers; exit 1 if none does."""
    from services.localdev.stack import local_cluster

    cluster = local_cluster(_settings())
    nodes = cluster.status()
    if as_json:
        typer.echo(orjson.dumps({"nodes": [asdict(n) for n in nodes]}).decode())
    else:
        for n in nodes:
            state = f"up, pid {n.pid}" if n.up else "down"
            err.print(f"node {n.id} at {cluster.host}:{n.port}: {state}")
    if not any(n.up for n in nodes):
        if not as_json:
            err.print(f"no local broker running (data in {cluster.root})")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except (ConfigError, KafkaUnavailableError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except httpx.HTTPError as exc:  # the API commands: nothing answered, or it broke off
        err.print(f"[red]error:[/red] no answer from {_url_of(exc)}: {exc!r}", soft_wrap=True)
        sys.exit(1)


def _url_of(exc: httpx.HTTPError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # an error raised before any request was made
        return "the API"


if __name__ == "__main__":
    main()
