-- One row per lifecycle event of tokenrelay.tokens (every type but `token`).
-- A worker that crashed mid-attempt may have published an attempt's events twice:
-- (job_id, attempt, seq, type) identifies an event, so ReplacingMergeTree folds the
-- copies; read with FINAL (or LIMIT 1 BY) where a duplicate would matter.
CREATE TABLE IF NOT EXISTS job_events
(
    job_id          String,
    attempt         UInt16,
    seq             UInt32,
    type            LowCardinality(String),
    ts              DateTime64(6, 'UTC'),
    tenant          LowCardinality(String),
    worker_id       LowCardinality(String),
    priority        LowCardinality(String),
    model           LowCardinality(String),
    provider        LowCardinality(String),
    batch_id        String,
    error_kind      LowCardinality(String),
    payload         String CODEC(ZSTD(3)),
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (job_id, attempt, seq, type)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per finished job (its terminal event with what its queued and started events
-- said). An admin retry finishes a job again: one row per (job_id, attempt). The sink
-- writes each batch under a deduplication token, so a batch inserted again after a
-- crash adds nothing here nor in the rollups below.
CREATE TABLE IF NOT EXISTS jobs
(
    job_id             String,
    attempt            UInt16,
    tenant             LowCardinality(String),
    batch_id           String,
    priority           LowCardinality(String),
    model              LowCardinality(String),
    provider           LowCardinality(String),
    status             LowCardinality(String),
    error_kind         LowCardinality(String),
    finish_reason      LowCardinality(String),
    worker_id          LowCardinality(String),
    prompt_tokens      UInt32,
    completion_tokens  UInt32,
    tokens             UInt32,
    cost_usd           Decimal(18, 9),
    estimated_cost_usd Decimal(18, 9),
    queued_at          DateTime64(6, 'UTC'),
    started_at         Nullable(DateTime64(6, 'UTC')),
    first_token_at     Nullable(DateTime64(6, 'UTC')),
    finished_at        DateTime64(6, 'UTC'),
    queue_wait_ms      Nullable(Float64),
    ttft_ms            Nullable(Float64),
    itl_p50_ms         Nullable(Float64),
    itl_p90_ms         Nullable(Float64),
    itl_p99_ms         Nullable(Float64),
    duration_ms        Nullable(Float64),
    tokens_per_s       Nullable(Float64),
    kafka_partition    UInt16,
    kafka_offset       UInt64
)
ENGINE = MergeTree
ORDER BY (tenant, finished_at, job_id)
SETTINGS non_replicated_deduplication_window = 10000;
