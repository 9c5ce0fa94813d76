"""The one settings class: every ``TOKENRELAY_*`` variable, read once per entrypoint."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.jobs import Priority
from services.core.limits import ModelLimit

DEV_API_KEYS = "trk_dev_key:dev:admin"


class Settings(BaseSettings):
    """Everything configurable. See the README for the meaning of each variable."""

    model_config = SettingsConfigDict(env_prefix="TOKENRELAY_", extra="ignore")

    kafka_bootstrap: str = "localhost:9092"
    topic_prefix: str = Field(default="tokenrelay", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    kafka_brokers: int = Field(
        default=1, ge=1, le=9, description="Nodes of the local Kafka that `kafka start`/`up` run."
    )
    tokens_retention_ms: int = 7 * 24 * 3600 * 1000
    worker_group: str = "workers"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    api_keys: SecretStr = SecretStr(DEV_API_KEYS)
    stream_token_secret: SecretStr | None = None
    stream_token_ttl_s: int = Field(default=3600, ge=1)
    public_url: str | None = None
    submit_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a submission may wait for Kafka before a 503 kafka_unavailable.",
    )
    stream_buffer_events: int = Field(default=1000, ge=10)
    stream_heartbeat_s: float = Field(default=15.0, gt=0)
    stream_replay_readers: int = Field(default=8, ge=1)
    stream_recent_records: int = Field(default=4096, ge=0)

    data_dir: Path = Path(".tokenrelay")
    clickhouse_url: str | None = Field(
        default=None, description="chdb://<dir> (default: <data_dir>/chdb) or http(s)://…"
    )
    clickhouse_database: str = Field(default="tokenrelay", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    analytics_group: str = "analytics"
    sink_session_timeout_ms: int = Field(default=10_000, ge=6000)
    sink_batch_records: int = Field(default=50_000, ge=1)
    sink_flush_s: float = Field(default=1.0, gt=0)
    sql_max_rows: int = Field(default=10_000, ge=1)
    sql_timeout_s: float = Field(default=10.0, gt=0)
    analytics_max_rows: int = Field(
        default=100_000, ge=1, description="Rows one cost, throughput or latency answer may hold."
    )
    analytics_timeout_s: float = Field(
        default=10.0, gt=0, description="How long one cost, throughput or latency query may run."
    )
    analytics_max_minute_window_days: float = Field(
        default=31, gt=0, description="Widest since..until of throughput per minute."
    )
    analytics_max_hour_window_days: float = Field(
        default=731, gt=0, description="Widest since..until of throughput per hour."
    )
    analytics_rate_per_min: float = Field(
        default=60,
        gt=0,
        description="Analytics requests (SQL included) per API key per minute; then 429.",
    )
    prices: Path | None = Field(default=None, description="A price file; default: the shipped one.")

    worker_concurrency: int = Field(default=16, ge=1)
    worker_grace_s: float = Field(default=25.0, ge=0)
    worker_session_timeout_ms: int = Field(default=10_000, ge=6000)
    priority_aging_s: float = Field(default=60.0, gt=0)
    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=300.0, ge=0)
    model_limits: dict[str, ModelLimit] = Field(default_factory=dict)
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    fake_tokens_per_s: float = Field(default=50.0, gt=0)
    fake_model: str = "fake-1"
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "TOKENRELAY_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "TOKENRELAY_OPENAI_BASE_URL")
    )

    aggregator_url: str = "http://127.0.0.1:6066"
    aggregator_host: str = "127.0.0.1"
    aggregator_port: int = 6066
    aggregator_instance: str | None = Field(
        default=None, description="Static group member name; default <hostname>-<port>."
    )
    aggregator_advertised_url: str | None = Field(
        default=None, description="How other instances reach this one; default http://host:port."
    )
    aggregator_session_timeout_s: float = Field(default=10.0, ge=6.0)
    state_store: str = Field(default="rocksdb://", pattern=r"^(memory|rocksdb)://")
    state_retention: float = Field(default=7 * 24 * 3600.0, gt=0, description="Seconds.")
    state_tick_s: float = Field(default=0.5, gt=0)
    batch_max_jobs: int = Field(default=10_000, ge=1)

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"

    kafka_version: str = "4.1.1"
    kafka_cache_dir: Path = Path.home() / ".cache" / "tokenrelay" / "kafka"

    @field_validator("log_level")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @property
    def default_provider(self) -> str:
        return "openai" if self.openai_api_key else "fake"

    def default_model(self, provider: str) -> str:
        return self.openai_model if provider == "openai" else self.fake_model

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'chdb').resolve()}"

    @cached_property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


def settings_env(settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """``TOKENRELAY_*`` variables that give a child process these settings' values."""
    out = {}
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[f"TOKENRELAY_{name.upper()}"] = str(value)
    return out


class Topics:
    """The topic names, derived from one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs = {p: f"{prefix}.jobs.{p.value}" for p in Priority}
        self.control = f"{prefix}.jobs.control"
        self.retry = f"{prefix}.jobs.retry"
        self.dlq = f"{prefix}.jobs.dlq"
        self.tokens = f"{prefix}.tokens"
        self.job_state = f"{prefix}.job-state"

    def jobs_by_priority(self) -> list[str]:
        """Job topics, highest priority first."""
        return [self.jobs[p] for p in Priority]
