from __future__ import annotations

import gc
import logging
import weakref

import pytest

from services.core import gc_pauses


def pauses(generation: str) -> float:
    for metric in gc_pauses.GC_PAUSE_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == generation:
                return sample.value
    return 0.0


def test_every_collection_is_timed_by_generation() -> None:
    gc_pauses.watch_collections()
    gc_pauses.watch_collections()
    assert gc.callbacks.count(gc_pauses._watch) == 1
    before = pauses("2")
    gc.collect()
    assert pauses("2") == before + 1


def test_a_long_pause_is_logged_and_a_short_one_is_not(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([0.0, 10.0, 10.35, 20.0, 20.01])
    watch = gc_pauses.PauseWatch(lambda: next(clock), freeze=lambda: None)
    with caplog.at_level(logging.WARNING, logger="services.core.gc_pauses"):
        watch("start", {"generation": 2})
        watch("stop", {"generation": 2, "collected": 7})
        watch("start", {"generation": 0})
        watch("stop", {"generation": 0, "collected": 1})
    assert caplog.messages == [
        "garbage collection of generation 2 held the process 350 ms (7 collected)"
    ]


def test_survivors_of_a_full_collection_are_frozen_and_thawed_every_ten_minutes() -> None:
    now = [0.0]
    calls: list[str] = []
    watch = gc_pauses.PauseWatch(
        lambda: now[0], lambda: calls.append("freeze"), lambda: calls.append("unfreeze")
    )

    def collect(generation: int, at: float) -> None:
        now[0] = at
        watch("start", {"generation": generation})
        watch("stop", {"generation": generation, "collected": 0})

    collect(0, 1.0)
    collect(1, 2.0)
    assert calls == [], "a young collection leaves the frozen set alone"
    collect(2, 3.0)
    collect(2, 300.0)
    assert calls == ["freeze", "freeze"]
    collect(2, 601.0)
    assert calls[-1] == "unfreeze", "after ten minutes the next full collection walks all"
    collect(2, 602.0)
    assert calls[-1] == "freeze"
    collect(2, 1100.0)
    assert calls[-1] == "freeze"
    collect(2, 1201.0)
    assert calls[-1] == "unfreeze"


def test_a_frozen_object_is_still_freed_by_its_last_reference() -> None:
    class Held:
        pass

    held = Held()
    gone = weakref.ref(held)
    gc.freeze()
    try:
        del held
        assert gone() is None
    finally:
        gc.unfreeze()
