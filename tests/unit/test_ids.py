from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from services.core.ids import is_issued_id, job_id_ms, new_job_id


def test_job_ids_are_uuid7_carrying_their_time() -> None:
    job_id = new_job_id(now_ms=1_795_425_348_566)
    u = uuid.UUID(job_id)
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert job_id_ms(job_id) == 1_795_425_348_566


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_job_id(now_ms=1000 + i) for i in range(100)]
    assert len(set(ids)) == 100
    assert sorted(ids) == ids


def test_non_uuid7_has_no_time() -> None:
    assert job_id_ms("not-a-uuid") is None
    assert job_id_ms(str(uuid.uuid4())) is None


def test_ids_drawn_in_the_same_millisecond_from_many_threads_never_repeat() -> None:
    # More draws than one fetch of random bytes holds, from threads racing for them.
    def draw() -> list[str]:
        return [new_job_id(now_ms=1000) for _ in range(5_000)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for batch in pool.map(lambda _: draw(), range(8)) for i in batch]
    assert len(set(ids)) == len(ids) == 40_000
    assert all(is_issued_id(i) and uuid.UUID(i).version == 7 for i in ids)
    assert len({i[15:] for i in ids}) == len(ids)  # the random part alone
