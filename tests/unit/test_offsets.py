from __future__ import annotations

from services.worker.offsets import OffsetTracker

TP = ("jobs", 0)


def test_commits_only_behind_the_lowest_running_offset() -> None:
    t = OffsetTracker()
    for off in (10, 11, 12):
        t.started(TP, off)
    assert t.committable() == {TP: 10}
    t.mark_committed({TP: 10})
    t.finished(TP, 12)
    t.finished(TP, 11)
    assert t.committable() == {}
    t.finished(TP, 10)
    assert t.committable() == {TP: 13}
    t.mark_committed({TP: 13})
    assert t.committable() == {}
    assert t.in_flight() == 0


def test_forgotten_partitions_are_not_committed() -> None:
    t = OffsetTracker()
    t.started(TP, 5)
    t.started(("jobs", 1), 7)
    t.forget([TP])
    assert t.committable() == {("jobs", 1): 7}
    assert t.in_flight() == 1
