"""The one settings class: every ``TOKENRELAY_*`` variable, read once per entrypoint.

The variables are grouped by the part they configure, one small model each
(``KafkaSettings``, ``IngestSettings``, ``WorkerSettings``, …); ``Settings``
combines them, so a value is read as ``settings.worker_concurrency`` whatever
its group, and the environment names are the field names with the prefix.
``docs/configuration.md`` is generated from these classes (``settings_doc``):
every field's ``description`` is its documentation.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

import orjson
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.jobs import Priority
from services.core.limits import ModelLimit

DEV_API_KEYS = "trk_dev_key:dev:admin"
ENV_PREFIX = "TOKENRELAY_"


def _doc_default(text: str) -> dict[str, Any]:
    """How the documentation shows a default that depends on the machine."""
    return {"doc_default": text}


class KafkaSettings(BaseModel):
    """The brokers, the topics, and the local Kafka of ``make up``."""

    kafka_bootstrap: str = Field(
        default="localhost:9092",
        description="Brokers; `make up` starts a local one unless this is set and answers.",
    )
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Nodes of the local Kafka that `make up` and `tokenrelay kafka start` run.",
    )
    kafka_version: str = Field(
        default="4.1.1", description="Apache Kafka version the local broker runs."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Worker processes `make up` runs (each `TOKENRELAY_WORKER_CONCURRENCY` jobs "
        "at once; the group shares the job topics' partitions among them).",
    )
    gateways: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Public-face processes `make up` runs behind the one HTTP port (each "
        "ingest and gateway, with its own fan-out); above one, analytics runs in a process "
        "of its own that they forward `/v1/analytics` to.",
    )
    kafka_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "tokenrelay" / "kafka",
        description="Where `mvn` puts Kafka's jars.",
        json_schema_extra=_doc_default("~/.cache/tokenrelay/kafka"),
    )
    topic_prefix: str = Field(
        default="tokenrelay",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Every topic name starts with it.",
    )
    topic_partitions: int = Field(default=3, ge=1, description="Partitions of topics we create.")
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replication of topics we create; above 1 with `min.insync.replicas=2`.",
    )
    tokens_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, description="Retention of `tokenrelay.tokens` (7 days)."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every client (librdkafka's and Faust's) talks to the brokers.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="The SASL mechanism, with a `SASL_*` protocol."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="The SASL user (a Strimzi `KafkaUser`'s name)."
    )
    kafka_sasl_password: SecretStr | None = Field(default=None, description="Its password.")
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM of the CA that signed the brokers' certificates (Strimzi's cluster CA); "
        "default: the system's.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for TLS client authentication …"
    )
    kafka_ssl_key_file: Path | None = Field(default=None, description="… and its private key.")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host dialled."
    )

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (self.kafka_sasl_username is None or self.kafka_sasl_password is None):
            raise ValueError(
                f"TOKENRELAY_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "TOKENRELAY_KAFKA_SASL_USERNAME and TOKENRELAY_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError(
                "TOKENRELAY_KAFKA_SSL_CERT_FILE and TOKENRELAY_KAFKA_SSL_KEY_FILE go together"
            )
        return self


def _origins_of(value: str) -> list[str]:
    """The origins of a comma-separated list, blanks and trailing slashes dropped."""
    return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]


class HttpSettings(BaseModel):
    """The HTTP faces: where they listen, who may call them, what they read."""

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP faces bind.")
    http_port: int = Field(
        default=8000,
        description="The public HTTP face; `make up` puts the worker's health port on the next.",
    )
    api_keys: SecretStr = Field(
        default=SecretStr(DEV_API_KEYS),
        description="`key:tenant:role` entries, comma-separated; role `admin` or `user`.",
        json_schema_extra=_doc_default(DEV_API_KEYS),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Larger request bodies get 413, chunked ones too, before they are read whole.",
    )
    cors_origins: str = Field(
        default="",
        description="Web origins (`https://app.example.com`, comma-separated; `*` for any) "
        "whose pages may call the API and open streams; none by default.",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: str) -> str:
        for origin in _origins_of(v):
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or origin.count("/") != 2
            ):
                raise ValueError(
                    f"TOKENRELAY_CORS_ORIGINS: {origin!r} is not an origin "
                    "(scheme://host[:port], no path)"
                )
        return v

    @property
    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` as a list, blanks dropped."""
        return _origins_of(self.cors_origins)


class IngestSettings(BaseModel):
    """Submissions: how long they wait for Kafka, how large a batch may be."""

    submit_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a submission waits for Kafka to confirm before it answers 503 "
        "`kafka_unavailable` with `Retry-After`.",
    )
    batch_max_jobs: int = Field(default=10_000, ge=1, description="Jobs per `POST /v1/batches`.")


class GatewaySettings(BaseModel):
    """Event streams: SSE and websockets, resume and replay."""

    stream_token_secret: SecretStr | None = Field(
        default=None,
        description="HMAC secret of stream tokens.",
        json_schema_extra=_doc_default("derived from the API keys"),
    )
    stream_token_ttl_s: int = Field(default=3600, ge=1, description="Lifetime of a stream token.")
    stream_buffer_events: int = Field(
        default=1000,
        ge=10,
        description="Events a stream may hold for a client that reads slower than its job "
        "writes; past it the client is cut off (it resumes).",
    )
    stream_heartbeat_s: float = Field(
        default=15.0, gt=0, description="SSE comment heartbeat of an idle stream."
    )
    stream_replay_readers: int = Field(
        default=8,
        ge=1,
        description="Consumers per gateway for reading a job's past events (late joins, resumes).",
    )
    stream_recent_records: int = Field(
        default=4096,
        ge=0,
        description="Records per partition of `tokenrelay.tokens` each gateway keeps in memory, "
        "so that streams joining a recent job need no Kafka read.",
    )


class AnalyticsSettings(BaseModel):
    """ClickHouse, the sink that fills it, and the cost of every question asked of it."""

    clickhouse_url: str | None = Field(
        default=None,
        description="The analytics store: `chdb://<dir>` runs ClickHouse inside the analytics "
        "process (one process per directory), `http(s)://user:pass@host:8123` uses a server.",
        json_schema_extra=_doc_default("chdb://<data dir>/chdb"),
    )
    clickhouse_database: str = Field(
        default="tokenrelay",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The database the tables live in (created at start).",
    )
    analytics_group: str = Field(
        default="analytics", description="The analytics sink's consumer group."
    )
    sink_session_timeout_ms: int = Field(
        default=10_000,
        ge=6000,
        description="How soon the sink's group notices a dead sink; a restarted one waits this "
        "long for its partitions.",
    )
    sink_batch_records: int = Field(
        default=50_000,
        ge=1,
        description="A partition's batch is inserted when it holds this many records …",
    )
    sink_flush_s: float = Field(default=1.0, gt=0, description="… or its oldest waited this long.")
    sql_max_rows: int = Field(
        default=10_000, ge=1, description="Rows ClickHouse lets `POST /v1/analytics/sql` answer."
    )
    sql_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds ClickHouse lets `POST /v1/analytics/sql` run."
    )
    analytics_max_rows: int = Field(
        default=100_000,
        ge=1,
        description="Rows one cost, throughput or latency answer may hold; past it 422 "
        "`too_expensive`.",
    )
    analytics_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one cost, throughput or latency query may run; past it 422 "
        "`too_expensive`.",
    )
    analytics_max_minute_window_days: float = Field(
        default=31, gt=0, description="Widest `since`..`until` of throughput per minute."
    )
    analytics_max_hour_window_days: float = Field(
        default=731, gt=0, description="Widest `since`..`until` of throughput per hour."
    )
    analytics_rate_per_min: float = Field(
        default=60,
        gt=0,
        description="Analytics requests (SQL included) per API key per minute; then 429 "
        "`rate_limited` with `Retry-After`.",
    )
    prices: Path | None = Field(
        default=None,
        description='A price file, `{"models": {"<model or prefix>": {"input": <USD per 1M '
        'prompt tokens>, "output": <USD per 1M completion tokens>}}}`; it replaces the shipped '
        "one.",
        json_schema_extra=_doc_default("the shipped services/core/prices.json"),
    )
    analytics_url: str | None = Field(
        default=None,
        description="A process serving the analytics part; a public face without it forwards "
        "`/v1/analytics` there (`make up` sets it when it runs several gateways).",
    )


class WorkerSettings(BaseModel):
    """Running jobs: concurrency, retries, budgets, and the providers."""

    worker_group: str = Field(default="workers", description="The workers' consumer group.")
    worker_concurrency: int = Field(default=16, ge=1, description="Jobs in flight per worker.")
    worker_grace_s: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long running jobs may take to end before they are handed "
        "back.",
    )
    worker_session_timeout_ms: int = Field(
        default=10_000,
        ge=6000,
        description="How soon the group notices a dead worker; its jobs then run elsewhere.",
    )
    progress_tick_s: float = Field(
        default=0.5,
        gt=0,
        description="A running job's token count reaches `tokenrelay.lifecycle` (and the "
        "analytics sink) at its first token, then at most once per tick.",
    )
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="`worker_id` in events, Kafka `client.id`.",
        json_schema_extra=_doc_default("<hostname>-<pid>"),
    )
    priority_aging_s: float = Field(
        default=60.0, gt=0, description="A job queued longer runs before fresher urgent work."
    )
    worker_readahead: int = Field(
        default=2000,
        ge=0,
        description="Jobs of one priority a worker may fetch ahead of its slots while fewer "
        "than `TOKENRELAY_WORKER_CONCURRENCY` more important jobs wait, so tenants can take "
        "turns past one tenant's backlog; each holds its command (prompt included) in memory "
        "and its offset open.",
    )
    retry_base_s: float = Field(
        default=1.0,
        ge=0,
        description="Retry backoff: uniform in [0, min(max, base·2^(attempt-1))], never before "
        "the provider's `Retry-After` …",
    )
    retry_max_s: float = Field(default=300.0, ge=0, description="… and never above this.")
    model_limits: dict[str, ModelLimit] = Field(
        default_factory=dict,
        description='Per-model budgets of the whole worker fleet, JSON: `{"gpt-4o-mini": '
        '{"rpm": 500, "tpm": 200000}}`; each worker spends its partitions\' share of the '
        "backlog, and a job waits for budget instead of drawing a 429.",
    )
    fake_tokens_per_s: float = Field(default=50.0, gt=0, description="Pace of the fake provider.")
    fake_model: str = Field(default="fake-1", description="Default model of the fake provider.")
    openai_model: str = Field(
        default="gpt-4o-mini", description="Default model of the openai provider."
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "TOKENRELAY_OPENAI_API_KEY"),
        description="Enables the openai provider (and makes it the default).",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "TOKENRELAY_OPENAI_BASE_URL"),
        description="Any OpenAI-compatible server (vLLM, Ollama, …).",
    )


class AggregatorSettings(BaseModel):
    """Job state: the Faust aggregator, its store and its views."""

    aggregator_url: str = Field(
        default="http://127.0.0.1:6066",
        description="Where the public face reads job state (any aggregator instance).",
    )
    aggregator_host: str = Field(
        default="127.0.0.1", description="Where an aggregator instance serves its views …"
    )
    aggregator_port: int = Field(default=6066, description="… and on which port.")
    aggregator_instance: str | None = Field(
        default=None,
        description="The instance's static group member name (and its data dir); unique per "
        "instance, stable across restarts.",
        json_schema_extra=_doc_default("<hostname>-<port>"),
    )
    aggregator_advertised_url: str | None = Field(
        default=None,
        description="How the other instances reach this one (set it when binding `0.0.0.0`).",
        json_schema_extra=_doc_default("http://<host>:<port>"),
    )
    aggregator_session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,
        description="How soon the aggregators' group notices a dead instance; a restarted one "
        "takes its partitions back at once.",
    )
    state_store: str = Field(
        default="rocksdb://",
        pattern=r"^(memory|rocksdb)://",
        description="The table store: `rocksdb://` (on disk, recovers only what it missed) or "
        "`memory://` (replays the changelog at start).",
    )
    state_retention: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Seconds a finished job stays in the job state; then a tombstone.",
    )
    state_tick_s: float = Field(
        default=0.5,
        gt=0,
        description="At most one progress write per running job per tick; lifecycle changes "
        "are written at once.",
    )


class ProcessSettings(BaseModel):
    """What every process shares: where it keeps local state, how much it logs."""

    data_dir: Path = Field(
        default=Path(".tokenrelay"),
        description="Local state: Kafka logs, chDB data, service logs.",
    )
    log_level: str = Field(default="INFO", description="Python log level of every process.")


GROUPS: tuple[type[BaseModel], ...] = (
    KafkaSettings,
    HttpSettings,
    IngestSettings,
    GatewaySettings,
    WorkerSettings,
    AggregatorSettings,
    AnalyticsSettings,
    ProcessSettings,
)
"""The groups, in the order the documentation lists them."""


class Settings(
    BaseSettings,
    KafkaSettings,
    HttpSettings,
    IngestSettings,
    GatewaySettings,
    WorkerSettings,
    AggregatorSettings,
    AnalyticsSettings,
    ProcessSettings,
):
    """Everything configurable (``docs/configuration.md``)."""

    # An empty variable counts as unset (compose's `${OPENAI_API_KEY:-}`, an optional Secret
    # key): it must not enable the openai provider with an empty key.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

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


def env_name(name: str) -> str:
    """The environment variable of a setting (its first alias, else the prefixed name)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ENV_PREFIX}{name.upper()}"


def env_value(value: Any) -> str:
    """A setting's value as its environment variable holds it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return orjson.dumps(
            {
                k: v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v
                for k, v in value.items()
            }
        ).decode()
    return str(value)


def settings_env(settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """The variables that give a child process these settings' values of ``names``."""
    return {env_name(n): env_value(getattr(settings, n)) for n in names}


PER_PROCESS = ("clickhouse_url", "data_dir", "worker_id")
"""Settings each process has of its own: chDB allows one data directory per process (a
child keeps ``<its data dir>/chdb``), and a data dir and a worker id name one process."""


def child_env(settings: Settings, *, exclude: Iterable[str] = PER_PROCESS) -> dict[str, str]:
    """Every setting that differs from its default, as a child process reads it.

    ``exclude`` leaves out what each process must have of its own. A setting left
    at its default is not passed, so the child computes it as the parent did.
    """
    skip = set(exclude)
    defaults = Settings.model_construct()
    names = [
        n
        for n in Settings.model_fields
        if n not in skip
        and getattr(settings, n) is not None
        and (n in settings.model_fields_set or getattr(settings, n) != getattr(defaults, n, None))
    ]
    return settings_env(settings, names)


class Topics:
    """The topic names, derived from one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs = {p: f"{prefix}.jobs.{p.value}" for p in Priority}
        self.control = f"{prefix}.jobs.control"
        self.retry = f"{prefix}.jobs.retry"
        self.dlq = f"{prefix}.jobs.dlq"
        self.tokens = f"{prefix}.tokens"
        self.lifecycle = f"{prefix}.lifecycle"
        self.job_state = f"{prefix}.job-state"
        self.tenants = f"{prefix}.tenants"
        self.keys = f"{prefix}.keys"
        self.spend = f"{prefix}.spend"

    def jobs_by_priority(self) -> list[str]:
        """Job topics, highest priority first."""
        return [self.jobs[p] for p in Priority]
