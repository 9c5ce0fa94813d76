-- Rollups of `jobs`, kept by materialized views as rows arrive; the API reads these.
-- Each target keeps a deduplication window so that a re-inserted batch (same token)
-- fills in a view that missed it and adds nothing to a view that has it.

-- Cost and tokens by hour × tenant × model × priority.
CREATE TABLE IF NOT EXISTS cost_hourly
(
    hour              DateTime('UTC'),
    tenant            LowCardinality(String),
    model             LowCardinality(String),
    priority          LowCardinality(String),
    jobs              UInt64,
    succeeded         UInt64,
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    cost_usd          Decimal(38, 9)
)
ENGINE = SummingMergeTree
ORDER BY (hour, tenant, model, priority)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_hourly_mv TO cost_hourly AS
SELECT
    toStartOfHour(finished_at) AS hour,
    tenant,
    model,
    priority,
    count() AS jobs,
    countIf(status = 'succeeded') AS succeeded,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd
FROM jobs
GROUP BY hour, tenant, model, priority;

-- Latency of succeeded jobs by hour × tenant × model: t-digest states of time to first
-- token, of each job's median inter-token latency, and of the attempt's duration.
CREATE TABLE IF NOT EXISTS latency_hourly
(
    hour        DateTime('UTC'),
    tenant      LowCardinality(String),
    model       LowCardinality(String),
    jobs        SimpleAggregateFunction(sum, UInt64),
    ttft_ms     AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64),
    itl_ms      AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64),
    duration_ms AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (hour, tenant, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_hourly_mv TO latency_hourly AS
SELECT
    toStartOfHour(finished_at) AS hour,
    tenant,
    model,
    toUInt64(count()) AS jobs,
    quantilesTDigestState(0.5, 0.9, 0.99)(ttft) AS ttft_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(itl, has_itl) AS itl_ms,
    quantilesTDigestState(0.5, 0.9, 0.99)(duration) AS duration_ms
FROM
(
    SELECT
        finished_at,
        tenant,
        model,
        assumeNotNull(ttft_ms) AS ttft,
        ifNull(itl_p50_ms, 0) AS itl,
        itl_p50_ms IS NOT NULL AS has_itl,
        ifNull(duration_ms, 0) AS duration
    FROM jobs
    WHERE status = 'succeeded' AND ttft_ms IS NOT NULL
)
GROUP BY hour, tenant, model;

-- Throughput by minute × tenant: jobs finished and tokens streamed.
CREATE TABLE IF NOT EXISTS throughput_minutely
(
    minute    DateTime('UTC'),
    tenant    LowCardinality(String),
    jobs      UInt64,
    succeeded UInt64,
    tokens    UInt64
)
ENGINE = SummingMergeTree
ORDER BY (minute, tenant)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS throughput_minutely_mv TO throughput_minutely AS
SELECT
    toStartOfMinute(finished_at) AS minute,
    tenant,
    count() AS jobs,
    countIf(status = 'succeeded') AS succeeded,
    sum(tokens) AS tokens
FROM jobs
GROUP BY minute, tenant;
