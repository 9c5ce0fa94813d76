"""The topics every part expects, with their partitions, retention and record size."""

from __future__ import annotations

from services.core.kafka import RECORD_LIMIT_BYTES, KafkaClients, TopicSpec
from services.core.settings import Settings


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    n, rf = settings.topic_partitions, settings.replication_factor
    # Replicated, an acknowledged write (acks=all) is on two brokers at least.
    isr = {"min.insync.replicas": "2"} if rf > 1 else {}
    # A job's command holds its whole prompt; a completed event and a job's state its output.
    isr["max.message.bytes"] = str(RECORD_LIMIT_BYTES)
    specs = [TopicSpec(name, n, rf, isr) for name in t.jobs_by_priority()]
    specs += [
        TopicSpec(t.control, n, rf, {**isr, "retention.ms": str(settings.tokens_retention_ms)}),
        TopicSpec(t.retry, n, rf, isr),
        TopicSpec(t.dlq, n, rf, {**isr, "retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(t.tokens, n, rf, {**isr, "retention.ms": str(settings.tokens_retention_ms)}),
        # Co-partitioned with the tokens (same count, same key): a job's lifecycle records
        # sit on the partition number of its tokens, which the job state names.
        TopicSpec(t.lifecycle, n, rf, {**isr, "retention.ms": str(settings.tokens_retention_ms)}),
        TopicSpec(t.job_state, n, rf, {**isr, "cleanup.policy": "compact"}),
        # A record per tenant and per run-time key, read whole by every process: one
        # partition keeps them in the order the admin API wrote them.
        TopicSpec(t.tenants, 1, rf, {**isr, "cleanup.policy": "compact"}),
        TopicSpec(t.keys, 1, rf, {**isr, "cleanup.policy": "compact"}),
        TopicSpec(t.spend, 1, rf, {**isr, "cleanup.policy": "compact"}),
    ]
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create whichever of our topics is missing; harmless when all exist."""
    return await KafkaClients.of(settings).admin().ensure_topics(topic_specs(settings))
