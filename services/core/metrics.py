"""Prometheus metrics shared by the services; ``/metrics`` exposes the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_SUBMITTED = Counter("tokenrelay_jobs_submitted_total", "Jobs accepted by ingest", ["priority"])
JOBS_REJECTED = Counter(
    "tokenrelay_requests_rejected_total", "Requests answered with a 4xx", ["code"]
)
SUBMIT_SECONDS = Histogram(
    "tokenrelay_submit_seconds", "Time to accept a job (both records confirmed by Kafka)"
)
JOBS_FINISHED = Counter(
    "tokenrelay_jobs_finished_total", "Attempts a worker ended", ["outcome", "provider"]
)
JOBS_RUNNING = Gauge("tokenrelay_jobs_running", "Jobs in flight in this worker process")
TOKENS_PRODUCED = Counter(
    "tokenrelay_tokens_produced_total", "Token events a worker published", ["provider"]
)
STREAMS_OPEN = Gauge("tokenrelay_streams_open", "Open event streams", ["transport"])
EVENTS_SENT = Counter("tokenrelay_stream_events_sent_total", "Events written to streams")
STREAMS_ENDED = Counter(
    "tokenrelay_streams_ended_total", "Streams that ended, by how", ["transport", "outcome"]
)
STREAM_SLOW_CLIENTS_CUT = Counter(
    "tokenrelay_stream_slow_clients_cut_total",
    "Streams cut off because their client stopped reading",
)
STREAM_REPLAY_READS = Counter(
    "tokenrelay_stream_replay_reads_total", "Reads of a job's past events for a stream"
)
STREAM_CONSUMER_LAG = Gauge(
    "tokenrelay_stream_consumer_lag",
    "Records of the tokens topic the gateway's fan-out has not read yet",
)
POISON_RECORDS = Counter(
    "tokenrelay_poison_records_total", "Records that could not be decoded", ["topic"]
)
TRANSACTIONS = Counter(
    "tokenrelay_worker_transactions_total", "Settlement transactions by result", ["result"]
)
QUEUE_WAIT = Histogram(
    "tokenrelay_queue_wait_seconds",
    "From submission (or a retry's not_before) to the start of an attempt",
    ["priority"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RETRIES = Counter("tokenrelay_retries_total", "Attempts sent to the retry topic", ["error_kind"])
DEAD_LETTERS = Counter("tokenrelay_dead_letters_total", "Records sent to the DLQ", ["reason"])
RATE_LIMIT_WAIT = Counter(
    "tokenrelay_rate_limit_wait_seconds_total", "Time jobs waited for a model's budget", ["model"]
)
AGGREGATOR_EVENTS = Counter(
    "tokenrelay_aggregator_events_total", "Events the aggregator read, by effect", ["effect"]
)
AGGREGATOR_STATE_WRITES = Counter(
    "tokenrelay_aggregator_state_writes_total", "Job states written to the changelog"
)
SINK_ROWS = Counter("tokenrelay_sink_rows_total", "Rows the analytics sink inserted", ["table"])
SINK_RECORDS = Counter(
    "tokenrelay_sink_records_total", "Records of the tokens topic the analytics sink read"
)
SINK_FLUSH_SECONDS = Histogram(
    "tokenrelay_sink_flush_seconds",
    "One partition's batch: insert into ClickHouse and commit offsets",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_RESTARTS = Counter(
    "tokenrelay_sink_restarts_total",
    "Sink sessions ended by a Kafka or ClickHouse error (the next one resumes from the commits)",
)
SINK_REPLAYED_BATCHES = Counter(
    "tokenrelay_sink_replayed_batches_total",
    "Batches a restarted sink inserted again under their first deduplication token",
)
SINK_LAG = Gauge(
    "tokenrelay_sink_consumer_lag", "Records of the tokens topic the analytics sink has not read"
)
