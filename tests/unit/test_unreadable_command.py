"""A command no worker can read ends the job it names, with ``failed`` (``invalid_command``)."""

from __future__ import annotations

import orjson

from schemas.events import ErrorKind
from services.core.ids import new_job_id
from services.worker.events import unreadable_command


def test_a_job_id_key_gets_a_terminal_failure_with_what_the_value_still_shows() -> None:
    job = new_job_id()
    value = orjson.dumps({"job_id": job, "tenant": "alice", "attempt": 2, "request": "broken"})
    failed = unreadable_command(job.encode(), value, "not a valid JobCommand", "w1")
    assert failed is not None
    assert (failed.job_id, failed.tenant, failed.attempt, failed.seq) == (job, "alice", 2, 0)
    assert failed.error_kind is ErrorKind.INVALID_COMMAND and not failed.retryable
    assert "not a valid JobCommand" in failed.message


def test_a_value_that_is_not_json_still_ends_the_job_as_attempt_1() -> None:
    job = new_job_id()
    failed = unreadable_command(job.encode(), b"\x00garbage", "decode", "w1")
    assert failed is not None and (failed.attempt, failed.tenant) == (1, "")


def test_a_key_that_names_no_job_ends_nothing() -> None:
    assert unreadable_command(b"poison", b"{}", "decode", "w1") is None
    assert unreadable_command(None, b"{}", "decode", "w1") is None
