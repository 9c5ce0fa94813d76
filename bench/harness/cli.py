"""``tokenrelay bench``: run scenarios, show a progress bar and each scenario's
table on stderr, and with ``--json`` put one JSON object on the last line of stdout.

``services/cli.py`` registers the command and imports this module only when it runs.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.harness import report
from bench.harness.scenarios import SCENARIOS, Options, Runner, shape, warm_up
from bench.harness.scenarios import Progress as LoadProgress
from bench.harness.stack import broker


def run(
    scenario: str,
    url: str | None = None,
    api_key: str | None = None,
    options: Options | None = None,
    as_json: bool = False,
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Run ``scenario`` (or ``all`` in turn); the report (for ``all``: every scenario's).

    Without ``url``, every scenario's stack is on one broker, warmed first by a load of
    ``warmup_s`` seconds (``scenarios.warm_up``) unless that is 0."""
    names = SCENARIOS if scenario == "all" else (scenario,)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; one of {', '.join(SCENARIOS)}")
    out, err = Console(), Console(stderr=True)
    results: dict[str, Any] = {}
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )

    def progress_of(name: str) -> LoadProgress:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(f"{name} {label}", total=total)
            bar.update(tasks[label], completed=done)

        return progress

    with bar, ExitStack() as shared:
        bootstrap = None if url else shared.enter_context(broker())
        warmed = warmup_s if bootstrap is not None else 0.0
        if warmed > 0:
            assert bootstrap is not None
            warm_up(bootstrap, warmed, progress_of("broker"))
        for name in names:
            runner = Runner(url, api_key, progress_of(name), bootstrap)
            results[name] = {**shape(runner.run(name, options or Options())), "warmup_s": warmed}
            bar.console.print(report.table(results[name]))
    final = (
        results[names[0]]
        if len(names) == 1
        else {
            "scenario": "all",
            "results": results,
            "machine": report.machine(),
        }
    )
    if as_json:
        out.file.write(orjson.dumps(final).decode() + "\n")
        out.file.flush()
    return final
