"""schemathesis over every operation of ``/openapi.json``, with an admin key and a user key.

Each run goes through schemathesis's phases (coverage, fuzzing, and the stateful
phase that follows the OpenAPI links: submit, then read, watch and cancel the
job; submit a batch, then pause, resume and cancel it) with every check but one:
no 5xx, every status, media type, header and body as documented, schema-
violating input refused, missing or wrong credentials refused, ``Allow`` on
405. Left out: ``positive_data_acceptance``, which assumes that any input the
schema allows succeeds; opaque tokens (a list cursor, a ``Last-Event-ID`` of
another job) and cross-field budgets (``since`` before ``until``, a window's
width) are refused by design though their shape is valid.

The seed is fixed so that CI is repeatable; ``TOKENRELAY_FUZZ_SEED`` picks another
and ``TOKENRELAY_FUZZ_EXAMPLES`` more cases per operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from services.core.settings import Settings
from tests.support.public_stack import public_stack

pytestmark = pytest.mark.kafka

CONFIG = Path(__file__).with_name("schemathesis.toml")
KEYS = {"admin": "key-admin", "user": "key-alice"}


def schemathesis(url: str, key: str, report: Path) -> tuple[int, str, Counter[int]]:
    """Run schemathesis against ``url``; its exit code, its output, and the statuses it saw."""
    examples = os.environ.get("TOKENRELAY_FUZZ_EXAMPLES", "20")
    seed = os.environ.get("TOKENRELAY_FUZZ_SEED", "20261205")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            examples,
            "--seed",
            seed,
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report",
            "har",
            "--report-har-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
        cwd=report.parent,  # its cache (.schemathesis/) stays out of the checkout
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    har = orjson.loads(report.read_bytes())
    statuses = Counter(e["response"]["status"] for e in har["log"]["entries"])
    return done.returncode, done.stdout + done.stderr, statuses


@pytest.mark.timeout(900)
def test_every_operation_answers_as_its_openapi_says(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(analytics_rate_per_min=1_000_000, fake_tokens_per_s=2000.0)
    with public_stack(settings, tmp_path) as public:
        runs = {
            who: schemathesis(public.url, key, tmp_path / f"{who}.har") for who, key in KEYS.items()
        }
    for who, (code, output, statuses) in runs.items():
        print(f"\n{who}: {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
        assert code == 0, f"schemathesis with the {who} key:\n{output[-8000:]}"
        assert not [s for s in statuses if s >= 500], f"{who}: server errors {statuses}"
        assert statuses[202] > 0 and statuses[200] > 0, "jobs were accepted and read back"
