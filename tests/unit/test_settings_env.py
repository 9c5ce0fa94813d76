"""How the environment becomes settings."""

from __future__ import annotations

import pytest

from services.core.settings import Settings


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose's `${OPENAI_API_KEY:-}` or an optional Secret key sets an empty value: the
    openai provider must stay off, and other settings keep their defaults."""
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("TOKENRELAY_CLICKHOUSE_URL", "")
    monkeypatch.setenv("TOKENRELAY_WORKER_CONCURRENCY", "")
    s = Settings()
    assert s.openai_api_key is None and s.openai_base_url is None
    assert s.default_provider == "fake"
    assert s.clickhouse_url is None and s.clickhouse_dsn.startswith("chdb://")
    assert s.worker_concurrency == Settings.model_fields["worker_concurrency"].default


def test_a_set_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("TOKENRELAY_WORKER_CONCURRENCY", "3")
    s = Settings()
    assert s.default_provider == "openai" and s.worker_concurrency == 3
