"""A worker's part of the fleet's budgets: its partitions' part of the work waiting."""

from __future__ import annotations

import pytest

from services.worker.fleet_share import share

P = [("jobs.normal", 0), ("jobs.normal", 1), ("jobs.high", 0), ("jobs.high", 1)]


def test_an_idle_fleet_splits_by_partitions_owned() -> None:
    idle = dict.fromkeys(P, 0)
    assert share(P[:2], idle) == 0.5
    assert share(P[:1], idle) == 0.25
    assert share([], idle) == 0.0


def test_the_shares_of_a_fleet_add_up_to_one() -> None:
    backlog = {P[0]: 90, P[1]: 0, P[2]: 7, P[3]: 3}
    owners = [[P[0]], [P[1], P[2]], [P[3]]]
    assert sum(share(owned, backlog) for owned in owners) == pytest.approx(1.0)


def test_the_worker_holding_the_backlog_gets_most_of_the_budget() -> None:
    # All the work is on the normal topic; the other worker owns only the high one's partitions.
    backlog = {P[0]: 50, P[1]: 48, P[2]: 0, P[3]: 0}
    assert share(P[:2], backlog) == pytest.approx(100 / 102)
    assert share(P[2:], backlog) == pytest.approx(2 / 102)


def test_without_figures_a_worker_keeps_the_whole_budget() -> None:
    assert share(P, {}) == 1.0
