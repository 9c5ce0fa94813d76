"""The compatibility rule of the topics' values: within a major version, only additions.

``schemas/compat/<major>/`` keeps the JSON Schema files as the major version was
first published, and records a real workload wrote under them (``records/``:
every value type that workload writes, every event type). A change that only
adds optional fields passes; one that removes, renames, retypes or newly
requires a field fails here, and needs a new major version (a new ``schema``
value, ``tokenrelay.JobEvent/2``, and a new directory beside this one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from schemas.commands import JobCommand
from schemas.control import parse_control
from schemas.dead_letter import DeadLetter
from schemas.events import parse_event
from schemas.export import SCHEMA_DIR
from schemas.jobs import JobRequest
from schemas.state import JobState

MAJOR = "1"
COMPAT = SCHEMA_DIR.parent / "compat" / MAJOR
RECORDS = sorted((COMPAT / "records").glob("*.json"))
READ = {
    "JobCommand": lambda v: JobCommand.model_validate(v).model_dump(mode="json", by_alias=True),
    "JobEvent": lambda v: parse_event(v).model_dump(mode="json", by_alias=True),
    "Control": lambda v: parse_control(json.dumps(v)).model_dump(mode="json", by_alias=True),
    "DeadLetter": lambda v: DeadLetter.model_validate(v).model_dump(mode="json", by_alias=True),
    "JobState": lambda v: JobState.model_validate(v).model_dump(mode="json", by_alias=True),
}
CURRENT_MAJORS = {
    "JobCommand": JobCommand.model_fields["schema_"].default,
    "JobState": JobState.model_fields["schema_"].default,
    "DeadLetter": DeadLetter.model_fields["schema_"].default,
}


def type_of(record: dict[str, Any]) -> str:
    """``"tokenrelay.JobEvent/1"`` → ``"JobEvent"``."""
    name, _, major = record["schema"].partition("/")
    assert major == MAJOR, f"a record of major {major} among those of {MAJOR}"
    return name.removeprefix("tokenrelay.")


def test_the_records_cover_every_value_type_and_event_type() -> None:
    kinds = {p.stem.rsplit("-", 1)[0] for p in RECORDS}
    events = {k.removeprefix("JobEvent-") for k in kinds if k.startswith("JobEvent-")}
    assert events == {"queued", "started", "token", "retrying", "completed", "failed", "cancelled"}
    assert {"JobCommand", "DeadLetter"} <= kinds
    assert any(k.startswith("Control-") for k in kinds)


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_a_record_written_under_the_first_schemas_reads_whole_with_the_current_models(
    path: Path,
) -> None:
    record = json.loads(path.read_text())
    kind = type_of(record)
    previous = json.loads((COMPAT / f"{kind}.schema.json").read_text())
    jsonschema.validate(record, previous)  # it is a record of the first schemas
    read = READ[kind](record)
    kept = {k: read[k] for k in record}
    assert kept == record, "a field of the record was dropped, renamed or changed in reading"


def _plain(schema: Any) -> Any:
    """A schema without what may change freely: descriptions, titles, examples."""
    if isinstance(schema, dict):
        return {
            k: _plain(v) for k, v in schema.items() if k not in {"description", "title", "examples"}
        }
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


def _objects(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every object schema in a file: the top level, its ``oneOf`` members, its ``$defs``."""
    found = {"": schema}
    for name, sub in schema.get("$defs", {}).items():
        found[name] = sub
    return {k: v for k, v in found.items() if "properties" in v}


@pytest.mark.parametrize("name", sorted(p.name for p in COMPAT.glob("*.schema.json")))
def test_the_current_schema_only_adds_to_the_first(name: str) -> None:
    before = _objects(json.loads((COMPAT / name).read_text()))
    now = _objects(json.loads((SCHEMA_DIR / name).read_text()))
    for obj, old in before.items():
        assert obj in now, f"{name}: {obj or 'the value'} was removed"
        new = now[obj]
        for field, shape in old["properties"].items():
            assert field in new["properties"], f"{name}: {obj}.{field} was removed or renamed"
            assert _plain(new["properties"][field]) == _plain(shape), (
                f"{name}: {obj}.{field} changed"
            )
        added = set(new.get("required", [])) - set(old.get("required", []))
        assert not added, f"{name}: {obj} now requires {sorted(added)}"


def test_the_models_still_name_major_version_one() -> None:
    for kind, value in CURRENT_MAJORS.items():
        assert value == f"tokenrelay.{kind}/{MAJOR}"
    assert JobRequest.model_json_schema()  # the request has no version: it is an HTTP body
