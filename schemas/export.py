"""Write one JSON Schema file per value type: ``python -m schemas.export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.commands import JobCommand
from schemas.control import control_json_schema
from schemas.dead_letter import DeadLetter
from schemas.events import event_json_schema
from schemas.jobs import JobRequest
from schemas.state import JobState
from schemas.tenants import ApiKeyRecord, TenantPolicy, TenantSpend

SCHEMA_DIR = Path(__file__).parent / "json"


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every value type of the contract."""
    return {
        "JobRequest.schema.json": JobRequest.model_json_schema(by_alias=True),
        "JobCommand.schema.json": JobCommand.model_json_schema(by_alias=True),
        "JobEvent.schema.json": event_json_schema(),
        "JobState.schema.json": JobState.model_json_schema(by_alias=True),
        "DeadLetter.schema.json": DeadLetter.model_json_schema(by_alias=True),
        "Control.schema.json": control_json_schema(),
        "TenantPolicy.schema.json": TenantPolicy.model_json_schema(by_alias=True),
        "ApiKey.schema.json": ApiKeyRecord.model_json_schema(by_alias=True),
        "TenantSpend.schema.json": TenantSpend.model_json_schema(by_alias=True),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, schema in all_schemas().items():
        (SCHEMA_DIR / name).write_text(render(schema))


if __name__ == "__main__":
    main()
