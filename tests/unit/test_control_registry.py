from schemas.commands import JobCommand
from schemas.control import Cancel, CancelBatch, PauseBatch, ResumeBatch
from schemas.jobs import JobRequest
from services.worker.control import Action, ControlRegistry, applies, decide
from services.worker.scheduling import HeldJobs


def command(job_id: str = "j1", batch_id: str | None = "b1", submitted_at: int = 100) -> JobCommand:
    return JobCommand(
        job_id=job_id,
        tenant="alice",
        submitted_at=submitted_at,
        batch_id=batch_id,
        provider="fake",
        model="fake-1",
        request=JobRequest(prompt="p"),
    )


def cancel(job_id: str = "j1", ts: int = 200) -> Cancel:
    return Cancel(job_id=job_id, ts=ts, by="alice")


def cancel_batch(batch_id: str = "b1", ts: int = 200) -> CancelBatch:
    return CancelBatch(batch_id=batch_id, ts=ts, by="alice", reason="stop")


def test_a_cancel_applies_to_commands_submitted_at_or_before_it() -> None:
    assert applies(cancel(ts=200), command(submitted_at=200))
    assert applies(cancel(ts=200), command(submitted_at=100))
    assert not applies(cancel(ts=200), command(submitted_at=201)), "an admin retry runs"
    assert not applies(None, command())


def test_cancel_beats_hold_and_a_job_neither_cancelled_nor_paused_runs() -> None:
    assert decide(cancel(), paused=True) is Action.CANCEL
    assert decide(cancel_batch(), paused=False) is Action.CANCEL
    assert decide(None, paused=True) is Action.HOLD
    assert decide(None, paused=False) is Action.RUN


def test_a_job_cancel_stops_the_job_but_not_its_later_retry() -> None:
    reg = ControlRegistry()
    reg.add(cancel("j1", ts=200))
    assert reg.cancel_for(command("j1", submitted_at=100)) == cancel("j1", ts=200)
    assert reg.cancel_for(command("j1", submitted_at=300)) is None
    assert reg.cancel_for(command("j2", submitted_at=100)) is None


def test_the_latest_cancel_of_a_job_is_kept_whatever_the_topic_order() -> None:
    reg = ControlRegistry()
    reg.add(cancel("j1", ts=500))
    reg.add(cancel("j1", ts=200))
    assert reg.cancel_for(command("j1", submitted_at=400)) == cancel("j1", ts=500)


def test_a_batch_cancel_stops_every_earlier_command_of_the_batch() -> None:
    reg = ControlRegistry()
    reg.add(cancel_batch("b1", ts=200))
    assert reg.cancel_for(command("j1", "b1", 100)) == cancel_batch("b1", ts=200)
    assert reg.cancel_for(command("j2", "b1", 150)) == cancel_batch("b1", ts=200)
    assert reg.cancel_for(command("j3", "b1", 300)) is None, "an admin retry in the batch runs"
    assert reg.cancel_for(command("j4", "b2", 100)) is None
    assert reg.cancel_for(command("j5", None, 100)) is None


def test_the_jobs_own_cancel_is_named_before_its_batchs() -> None:
    reg = ControlRegistry()
    reg.add(cancel_batch("b1", ts=200))
    reg.add(cancel("j1", ts=250))
    assert reg.cancel_for(command("j1", "b1", 100)) == cancel("j1", ts=250)


def test_pause_and_resume_the_latest_in_topic_order_wins() -> None:
    reg = ControlRegistry()
    assert not reg.paused("b1")
    reg.add(PauseBatch(batch_id="b1", ts=1, by="alice"))
    assert reg.paused("b1")
    assert not reg.paused("b2")
    assert not reg.paused(None)
    assert reg.action(command("j1", "b1")) is Action.HOLD
    reg.add(ResumeBatch(batch_id="b1", ts=2, by="alice"))
    assert not reg.paused("b1")
    assert reg.action(command("j1", "b1")) is Action.RUN
    reg.add(PauseBatch(batch_id="b1", ts=3, by="alice"))
    reg.add(ResumeBatch(batch_id="b1", ts=4, by="alice"))
    reg.add(PauseBatch(batch_id="b1", ts=5, by="alice"))
    assert reg.paused("b1")


def test_a_cancelled_paused_batch_cancels_its_jobs() -> None:
    reg = ControlRegistry()
    reg.add(PauseBatch(batch_id="b1", ts=150, by="alice"))
    reg.add(cancel_batch("b1", ts=200))
    assert reg.action(command("j1", "b1", 100)) is Action.CANCEL


def test_the_version_grows_with_every_instruction() -> None:
    reg = ControlRegistry()
    v0 = reg.version
    reg.add(PauseBatch(batch_id="b1", ts=1, by="alice"))
    reg.add(cancel("j1"))
    assert reg.version == v0 + 2


def test_a_watch_fires_on_its_jobs_cancel_or_its_batchs_and_nothing_else() -> None:
    reg = ControlRegistry()
    in_batch = reg.watch(command("j1", "b1", 100))
    other_batch = reg.watch(command("j2", "b2", 100))
    retried = reg.watch(command("j3", "b1", 300))
    reg.add(cancel("j9", ts=200))
    reg.add(PauseBatch(batch_id="b1", ts=200, by="alice"))
    assert not any(w.event.is_set() for w in (in_batch, other_batch, retried))
    reg.add(cancel_batch("b1", ts=200))
    assert in_batch.event.is_set()
    assert not other_batch.event.is_set()
    assert not retried.event.is_set(), "submitted after the batch cancel"
    reg.add(cancel("j2", ts=200))
    assert other_batch.event.is_set()


def test_a_watch_of_an_already_cancelled_command_is_set_and_unwatch_forgets_it() -> None:
    reg = ControlRegistry()
    reg.add(cancel("j1", ts=200))
    watch = reg.watch(command("j1", submitted_at=100))
    assert watch.event.is_set()
    later = reg.watch(command("j2", submitted_at=100))
    reg.unwatch(later)
    reg.add(cancel("j2", ts=200))
    assert not later.event.is_set()


def test_held_jobs_are_released_in_the_order_they_were_held() -> None:
    held: HeldJobs[str] = HeldJobs()
    for job in ("a1", "b1", "a2", "b2"):
        held.hold(job[0], job)
    assert len(held) == 4
    assert held.release(lambda j: j.startswith("b")) == ["a1", "a2"]
    assert len(held) == 2
    held.discard(lambda j: j == "b1")
    assert held.release(lambda _j: False) == ["b2"]
    assert len(held) == 0
