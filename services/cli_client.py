"""What the API commands of ``tokenrelay`` share: the client, its options, the answers.

Every such command takes ``--url`` (env ``TOKENRELAY_URL``; default this
machine's public face) and ``--api-key`` (env ``TOKENRELAY_API_KEY``; default
the first configured key), and ``--json`` where it prints an answer.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console

from services.core.auth import parse_api_keys
from services.core.settings import Settings

err = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        envvar="TOKENRELAY_URL", help="the public face; default http://TOKENRELAY_HTTP_HOST:PORT"
    ),
]
KeyOption = Annotated[
    str | None, typer.Option(envvar="TOKENRELAY_API_KEY", help="default: the first configured")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print the JSON answer")]


def api_client(
    url: str | None, api_key: str | None, read_timeout: float | None = 60.0
) -> httpx.Client:
    """A client of the public face at ``url`` with ``api_key`` (``read_timeout`` None: a
    stream, which may be quiet between events for as long as its job runs)."""
    settings = Settings()
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    key = api_key or next(iter(parse_api_keys(settings.api_keys.get_secret_value())))
    return httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(60.0, read=read_timeout),
    )


def answer(r: httpx.Response, ok: tuple[int, ...] = (200,)) -> Any:
    """The JSON of an answer with an ``ok`` status; else the error on stderr and exit 1."""
    if r.status_code not in ok:
        try:
            error = r.json()["error"]
            field = f" ({error['field']})" if error.get("field") else ""
            err.print(f"[red]{r.status_code}[/red] {error['message']}{field}")
        except (ValueError, KeyError, TypeError):
            err.print(f"[red]{r.status_code}[/red] {r.text}")
        raise typer.Exit(1)
    return r.json()


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def report(value: Any, as_json: bool, summary: str) -> None:
    """An answer as JSON on stdout (``--json``), else its one-line ``summary`` on stderr."""
    if as_json:
        print_json(value)
    else:
        err.print(summary, soft_wrap=True)


def print_stream(client: httpx.Client, path: str) -> dict[str, Any]:
    """Print token text as SSE events arrive, the terminal event's summary on stderr; returns
    the terminal event (exit 1 after a failed or cancelled one)."""
    event = ""
    last: dict[str, Any] = {}
    with client.stream("GET", path) as resp:
        if resp.status_code != 200:
            err.print(f"[red]{resp.status_code}[/red] {resp.read().decode()}")
            raise typer.Exit(1)
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                last = data
                if event == "started" and data["attempt"] > 1:
                    sys.stdout.write("\n")
                if event == "token":
                    sys.stdout.write(data["text"])
                    sys.stdout.flush()
                elif event == "completed":
                    u = data["usage"]
                    sys.stdout.write("\n")
                    err.print(
                        f"[green]completed[/green] {u['completion_tokens']} tokens, "
                        f"ttft {data['ttft_ms']} ms, {data['tokens_per_s']} tokens/s"
                    )
                elif event in ("failed", "cancelled"):
                    sys.stdout.write("\n")
                    err.print(
                        f"[red]{event}[/red] {data.get('error_kind', '')} {data.get('message', '')}"
                    )
                    raise typer.Exit(1)
    return last
