"""Analytics answers as terminal tables, for ``tokenrelay sql`` and ``tokenrelay stats``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return " ".join(f"{k} {_cell(v)}" for k, v in value.items())
    return str(value)


def table_of(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> Table:
    """A table with one column per name; numbers right-aligned."""
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]
    table = Table(title=title or None, title_justify="left")
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if right else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def table_of_dicts(rows: Sequence[dict[str, Any]], title: str = "") -> Table:
    """``{"rows": [...]}`` of an analytics endpoint as a table (columns from the first row)."""
    columns = list(rows[0]) if rows else []
    return table_of(columns, [[r.get(c) for c in columns] for r in rows], title)


def stats_summary(
    cost_rows: Sequence[dict[str, Any]], rate_rows: Sequence[dict[str, Any]], window_s: float
) -> str:
    """One line: jobs and tokens over the window (per minute), dollars (whole hours)."""
    jobs = sum(r["jobs"] for r in rate_rows)
    tokens = sum(r["tokens"] for r in rate_rows)
    usd = sum(r["cost_usd"] for r in cost_rows)
    return (
        f"last {window_s / 60:.0f} min: {jobs:,} jobs, {tokens:,} tokens "
        f"({jobs / window_s:.2f} jobs/s, {tokens / window_s:,.1f} tokens/s); "
        f"cost ${usd:,.6f} over the hours it touches"
    )
