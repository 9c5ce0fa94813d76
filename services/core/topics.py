"""The topics every part expects, with their partitions and retention."""

from __future__ import annotations

from services.core.kafka import Admin, TopicSpec
from services.core.settings import Settings


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    n, rf = settings.topic_partitions, settings.replication_factor
    specs = [TopicSpec(name, n, rf) for name in t.jobs_by_priority()]
    specs += [
        TopicSpec(t.control, n, rf, {"retention.ms": str(settings.tokens_retention_ms)}),
        TopicSpec(t.retry, n, rf),
        TopicSpec(t.dlq, n, rf, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        TopicSpec(t.tokens, n, rf, {"retention.ms": str(settings.tokens_retention_ms)}),
        TopicSpec(t.job_state, n, rf, {"cleanup.policy": "compact"}),
    ]
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create whichever of our topics is missing; harmless when all exist."""
    return await Admin(settings.kafka_bootstrap).ensure_topics(topic_specs(settings))
