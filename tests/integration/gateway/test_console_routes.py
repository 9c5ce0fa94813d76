"""What the dashboard reads beside job state, as the API answers it: who a key is, a stream
token for a job one may read (and none for another tenant's), the workers' group, and the
dead letters (admins only), against a real stack with the aggregator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka as ck
import httpx
import pytest

from schemas.jobs import Priority
from services.core.settings import Settings
from tests.conftest import ADMIN, ALICE, BOB
from tests.support.aggregators import aggregator_process, with_aggregator_port
from tests.support.sse import read_events
from tests.support.stack import running

pytestmark = pytest.mark.kafka


@pytest.fixture
def api(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[httpx.Client, Settings]]:
    settings = with_aggregator_port(make_settings(state_store="memory://"))
    with (
        aggregator_process(settings, tmp_path),
        running(settings, ["ingest", "gateway", "worker"]) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        yield client, settings


def until(
    read: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]
) -> httpx.Response:
    give_up = time.monotonic() + 30
    while not done(last := read()):
        assert time.monotonic() < give_up, last.text
        time.sleep(0.2)
    return last


def test_me_names_the_tenant_and_role_of_the_key(api: tuple[httpx.Client, Settings]) -> None:
    client, _ = api
    assert client.get("/v1/me", headers=ALICE).json() == {"tenant": "alice", "role": "user"}
    assert client.get("/v1/me", headers=ADMIN).json() == {"tenant": "ops", "role": "admin"}
    assert client.get("/v1/me").status_code == 401


def test_a_stream_token_reads_a_job_one_may_read_and_no_other(
    api: tuple[httpx.Client, Settings],
) -> None:
    client, _ = api
    r = client.post("/v1/jobs", json={"prompt": "p", "max_tokens": 5}, headers=ALICE)
    job_id = r.json()["job_id"]
    until(lambda: client.get(f"/v1/jobs/{job_id}", headers=ALICE), lambda r: r.status_code == 200)

    grant = client.post(f"/v1/jobs/{job_id}/stream-token", headers=ALICE).json()
    assert grant["stream_url"] == f"/v1/jobs/{job_id}/events" and grant["expires_in_s"] > 0
    events = read_events(client, f"{grant['stream_url']}?token={grant['stream_token']}")
    assert events[-1].event == "completed" and events[-1].data["tenant"] == "alice"

    theirs = client.post(f"/v1/jobs/{job_id}/stream-token", headers=BOB)
    assert theirs.status_code == 404 and theirs.json()["error"]["field"] == "job_id"
    assert client.post(f"/v1/jobs/{job_id}/stream-token").status_code == 401
    # an admin's token reads the job as its tenant
    admin_grant = client.post(f"/v1/jobs/{job_id}/stream-token", headers=ADMIN).json()
    url = f"{admin_grant['stream_url']}?token={admin_grant['stream_token']}"
    assert read_events(client, url)[-1].event == "completed"


def test_the_workers_group_shows_members_and_partitions_and_hosts_to_admins(
    api: tuple[httpx.Client, Settings],
) -> None:
    client, settings = api
    mine = until(
        lambda: client.get("/v1/workers", headers=ALICE), lambda r: bool(r.json()["members"])
    ).json()
    assert mine["group"] == settings.worker_group and mine["state"] == "STABLE"
    (member,) = mine["members"]
    assert member["host"] is None
    assert member["partitions"][settings.topics.jobs[Priority.NORMAL]] == [0, 1, 2]
    (seen_by_admin,) = client.get("/v1/workers", headers=ADMIN).json()["members"]
    assert seen_by_admin["host"] and seen_by_admin["client_id"] == member["client_id"]


def test_dead_letters_are_for_admins_newest_first_with_their_errors(
    api: tuple[httpx.Client, Settings],
) -> None:
    client, settings = api
    assert client.get("/v1/admin/dead-letters", headers=ALICE).status_code == 403
    assert client.get("/v1/admin/dead-letters?limit=0", headers=ADMIN).status_code == 422
    assert client.get("/v1/admin/dead-letters", headers=ADMIN).json() == {"dead_letters": []}

    producer = ck.Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for n in range(3):
        producer.produce(settings.topics.jobs[Priority.NORMAL], f"junk {n}".encode(), key=b"k")
        producer.flush(10)
    letters = until(
        lambda: client.get("/v1/admin/dead-letters?limit=2", headers=ADMIN),
        lambda r: (
            len(r.json()["dead_letters"]) == 2 and r.json()["dead_letters"][0]["raw"] == "junk 2"
        ),
    ).json()["dead_letters"]
    assert [d["raw"] for d in letters] == ["junk 2", "junk 1"]
    assert all("not a valid JobCommand" in d["error"] and d["command"] is None for d in letters)
    assert letters[0]["source"].startswith(settings.topics.jobs[Priority.NORMAL])
