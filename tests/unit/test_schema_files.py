"""The exported JSON Schema files match the models (run `make schemas` after a change)."""

from __future__ import annotations

from schemas.export import SCHEMA_DIR, all_schemas, render


def test_every_schema_file_matches_its_model() -> None:
    for name, schema in all_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text() == render(schema), f"{name} is stale: run `make schemas`"


def test_no_stray_schema_files() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(all_schemas())
