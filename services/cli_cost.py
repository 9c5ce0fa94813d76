"""``tokenrelay cost replay``: finished jobs repriced under another price table.

One call of ``POST /v1/analytics/cost-replay`` (admin key): the analytics
process reads the jobs, prices them and keeps the result in its own table
(``cost_replays``); recorded costs are never changed. While it runs, a spinner
with the time elapsed; then the recorded, replayed and difference dollars by
model and by tenant (``replay_tables``, a pure function the tests call too).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli_client import (
    JsonOption,
    KeyOption,
    UrlOption,
    answer,
    api_client,
    err,
    print_json,
)

cost_app = typer.Typer(
    help="Cost: replay finished jobs under another price table.", no_args_is_help=True
)

REPLAY_TIMEOUT_S = 3600.0
"""How long the command waits for the answer: the analytics process prices every job first."""


def usd(value: float, signed: bool = False) -> str:
    """Dollars to the nano-dollar, trailing zeros trimmed to cents: ``0.000021``, ``12.50``."""
    text = f"{Decimal(repr(value)):{'+' if signed else ''},.9f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def _change(group: dict[str, Any]) -> str:
    recorded = group["recorded_usd"]
    if not recorded:
        return "—"
    return f"{100 * group['difference_usd'] / recorded:+.1f} %"


def group_table(title: str, key: str, groups: Sequence[dict[str, Any]]) -> Table:
    """One row per group: jobs, recorded, replayed, difference and change."""
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    for name in ("jobs", "recorded $", "replayed $", "difference $", "change"):
        table.add_column(name, justify="right")
    for g in groups:
        table.add_row(
            str(g[key]),
            f"{g['jobs']:,}",
            usd(g["recorded_usd"]),
            usd(g["replayed_usd"]),
            usd(g["difference_usd"], signed=True),
            _change(g),
        )
    return table


def replay_tables(out: dict[str, Any]) -> list[Table]:
    """The answer of a replay as two tables: by model, then by tenant."""
    return [
        group_table("by model", "model", out["by_model"]),
        group_table("by tenant", "tenant", out["by_tenant"]),
    ]


def replay_summary(out: dict[str, Any]) -> str:
    """One line: the replay's id, its jobs, and the totals recorded and replayed."""
    return (
        f"replay {out['replay_id']}: {out['jobs']:,} jobs, recorded ${usd(out['recorded_usd'])}, "
        f"replayed ${usd(out['replayed_usd'])} "
        f"(difference ${usd(out['difference_usd'], signed=True)}, {_change(out)})"
    )


def _price_table(path: Path) -> Any:
    try:
        table = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        err.print(f"[red]error:[/red] cannot read the price file {path}: {exc}")
        raise typer.Exit(2) from exc
    if not isinstance(table, dict):
        err.print(f'[red]error:[/red] {path} is not a price table ({{"models": {{…}}}})')
        raise typer.Exit(2)
    return table


@cost_app.command("replay")
def replay(
    prices: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="a price file of the TOKENRELAY_PRICES shape"
        ),
    ],
    since: Annotated[
        str | None, typer.Option(help="jobs finished at or after (ISO 8601; default: all)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="jobs finished before (default: now)")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Reprice finished jobs under another price table and show the difference (admin).

    Recorded costs stay as they were; the replay is kept in the analytics table
    cost_replays under the id it prints."""
    body: dict[str, Any] = {"prices": _price_table(prices)}
    body |= {k: v for k, v in (("since", since), ("until", until)) if v is not None}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with (
        api_client(url, api_key, read_timeout=REPLAY_TIMEOUT_S) as client,
        Progress(*columns, console=err, transient=True) as progress,
    ):
        progress.add_task("replaying the finished jobs under the new prices …", total=None)
        out = answer(client.post("/v1/analytics/cost-replay", json=body))
    if as_json:
        print_json(out)
        return
    console = Console()
    for table in replay_tables(out):
        console.print(table)
    console.print(replay_summary(out), soft_wrap=True)
    if out["unpriced_models"]:
        err.print(
            "[yellow]not priced by the table (cost 0):[/yellow] "
            + ", ".join(out["unpriced_models"])
        )
