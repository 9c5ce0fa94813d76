"""When ``tokenrelay up`` restarts a child, and when it gives up; and the chatty-log filter."""

from __future__ import annotations

import logging

import pytest

from services.core.logs import RepeatFilter
from services.localdev.supervisor import RestartPolicy


def test_backoff_grows_then_gives_up_within_the_window() -> None:
    policy = RestartPolicy(backoff_s=(1.0, 2.0, 4.0), max_failures=3, window_s=60.0)
    assert policy.delay([100.0], 100.0) == 1.0
    assert policy.delay([100.0, 102.0], 102.0) == 2.0
    assert policy.delay([100.0, 102.0, 105.0], 105.0) is None


def test_old_failures_are_forgotten() -> None:
    policy = RestartPolicy(backoff_s=(1.0, 2.0, 4.0), max_failures=3, window_s=60.0)
    assert policy.delay([0.0, 10.0, 200.0], 200.0) == 1.0, "a part that ran a while starts afresh"


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_repeat_filter_holds_back_a_chatty_clients_repeats_and_counts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("services.core.logs.time.monotonic", lambda: now[0])
    f = RepeatFilter(window_s=60.0)
    line = "Connect to ipv4#127.0.0.1:{} failed (after {}ms)"
    assert f.filter(_record("librdkafka", line.format(9092, 0)))
    for port in range(5):
        now[0] += 1
        assert not f.filter(_record("librdkafka", line.format(port, port)))
    assert f.filter(_record("librdkafka", "Disconnected: connection reset")), "a new kind passes"
    now[0] += 60
    again = _record("librdkafka", line.format(1, 1))
    assert f.filter(again), "one line per window"
    assert again.getMessage().endswith("(5 more like this held back)")


def test_repeat_filter_leaves_our_own_lines_alone() -> None:
    f = RepeatFilter(window_s=60.0)
    assert all(f.filter(_record("services.worker.runner", "job 1 started")) for _ in range(3))
