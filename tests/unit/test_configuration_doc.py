"""``docs/configuration.md`` is what the settings classes say: every variable, documented."""

from __future__ import annotations

from services.core.settings import GROUPS, Settings, env_name
from services.core.settings_doc import DOC, markdown


def test_the_page_is_generated_from_the_settings() -> None:
    assert DOC.read_text() == markdown(), "docs/configuration.md is stale: run `make docs`"


def test_every_setting_belongs_to_a_group_and_says_what_it_means() -> None:
    grouped = [name for group in GROUPS for name in group.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields), "a setting outside every group"
    assert len(grouped) == len(set(grouped)), "a setting in two groups"
    undocumented = [n for n in grouped if not (Settings.model_fields[n].description or "").strip()]
    assert not undocumented
    page = DOC.read_text()
    assert all(f"`{env_name(n)}`" in page for n in grouped)
