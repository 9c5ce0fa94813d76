from __future__ import annotations

import uuid

from services.core.ids import job_id_ms, new_job_id


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
