from services.core.kafka import OffsetCommit
from services.worker.offsets import OffsetLedger, decode_metadata, encode_metadata

TP = ("jobs", 0)


def test_metadata_round_trips_ranges_and_start_counts() -> None:
    finished = {12, 13, 14, 17, 20, 21}
    starts = {10: 1, 11: 3}
    text = encode_metadata(10, finished, starts)
    assert text == "v1;f=2-4,7,10-11;s=0:1,1:3"
    assert decode_metadata(10, text) == (finished, starts)


def test_foreign_or_empty_metadata_means_nothing_known() -> None:
    assert decode_metadata(5, "") == (set(), {})
    assert decode_metadata(5, "written by some other tool") == (set(), {})


def test_commits_stop_at_the_lowest_unfinished_job_and_carry_the_finished_above() -> None:
    ledger = OffsetLedger()
    ledger.assign(TP, None, "")
    for off in range(5):
        assert ledger.fetched(TP, off)
    offsets = ledger.take_commit({TP: {1, 3}})
    assert offsets == {TP: OffsetCommit(0, "v1;f=1,3;s=")}
    ledger.committed(offsets, {TP: {1, 3}})
    offsets = ledger.take_commit({TP: {0}})
    assert offsets[TP].offset == 2
    assert decode_metadata(2, offsets[TP].metadata)[0] == {3}
    ledger.committed(offsets, {TP: {0}})
    offsets = ledger.take_commit({TP: {2, 4}})
    assert offsets == {TP: OffsetCommit(5, "")}


def test_a_new_owner_skips_jobs_that_ended_and_counts_earlier_starts() -> None:
    old = OffsetLedger()
    old.assign(TP, 7, "")
    for off in (7, 8, 9):
        old.fetched(TP, off)
        old.started(TP, off)
    committed = old.take_commit({TP: {8}})[TP]

    new = OffsetLedger()
    new.assign(TP, committed.offset, committed.metadata)
    assert new.fetched(TP, 7) and new.prior_starts(TP, 7) == 1
    assert not new.fetched(TP, 8), "offset 8 ended under the old owner"
    assert new.fetched(TP, 9) and new.prior_starts(TP, 9) == 1


def test_a_failed_commit_is_offered_again() -> None:
    ledger = OffsetLedger()
    ledger.assign(TP, 0, "")
    ledger.fetched(TP, 0)
    ledger.started(TP, 0)
    first = ledger.take_commit()
    assert ledger.take_commit() == {}
    ledger.commit_failed(first)
    assert ledger.take_commit() == first


def test_revoked_partitions_are_not_committed() -> None:
    ledger = OffsetLedger()
    ledger.assign(TP, 0, "")
    ledger.fetched(TP, 0)
    ledger.revoke(TP)
    assert ledger.take_commit({TP: {0}}) == {}
    assert not ledger.owns(TP)
