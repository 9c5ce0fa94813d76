-- What finished jobs would have cost under another price table (`POST /v1/analytics/cost-replay`):
-- one row per job row of `jobs` (job_id, attempt) in the replay's window, under the replay's id.
-- `recorded_cost` is the job's `cost_usd` as it was when replayed; `jobs` itself is never
-- changed. The rows of a replay are complete once its answer has been given.
CREATE TABLE IF NOT EXISTS cost_replays
(
    replay_id         String,
    replayed_at       DateTime64(6, 'UTC'),
    job_id            String,
    attempt           UInt16,
    tenant            LowCardinality(String),
    model             LowCardinality(String),
    finished_at       DateTime64(6, 'UTC'),
    prompt_tokens     UInt32,
    completion_tokens UInt32,
    recorded_cost     Decimal(18, 9),
    replayed_cost     Decimal(18, 9)
)
ENGINE = MergeTree
ORDER BY (replay_id, tenant, model, job_id, attempt);
