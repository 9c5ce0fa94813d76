"""``schemas/asyncapi.yaml`` is what the generator writes, and it names every topic."""

from __future__ import annotations

import yaml

from schemas.export import SCHEMA_DIR
from services.core.asyncapi import ASYNCAPI_PATH, document, render
from services.core.settings import Settings
from services.core.topics import topic_specs


def test_the_file_is_up_to_date() -> None:
    assert ASYNCAPI_PATH.read_text() == render(document()), "stale: run `make schemas`"


def test_every_topic_is_a_channel_with_its_key_payload_and_config() -> None:
    doc = yaml.safe_load(ASYNCAPI_PATH.read_text())
    assert doc["asyncapi"].startswith("3.")
    specs = {s.name: s for s in topic_specs(Settings.model_construct())}
    channels = {c["address"]: c for c in doc["channels"].values()}
    assert set(channels) == set(specs)
    for name, channel in channels.items():
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == specs[name].partitions
        (ref,) = channel["messages"].values()
        message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        assert (SCHEMA_DIR.parent / message["payload"]["schema"]["$ref"]).exists()
        assert message["bindings"]["kafka"]["key"]["description"]
    state = channels["tokenrelay.job-state"]["bindings"]["kafka"]["topicConfiguration"]
    assert state["cleanup.policy"] == ["compact"]
    tokens = channels["tokenrelay.tokens"]["bindings"]["kafka"]["topicConfiguration"]
    assert tokens["retention.ms"] == Settings.model_construct().tokens_retention_ms
    operations = doc["operations"].values()
    assert all("read_committed" in op["description"] for op in operations)
