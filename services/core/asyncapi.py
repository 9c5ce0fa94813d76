"""``schemas/asyncapi.yaml``: the topics as an AsyncAPI 3 document, for apps that subscribe.

Generated (``make schemas``, ``python -m services.core.asyncapi``) from what the
parts use: the topic specs of the default settings (partitions, retention,
compaction, record size), the value types' JSON Schema files beside it
(``schemas/json/``, referenced, not copied), and the key, headers, order and
delivery promises written here once. A unit test fails when the file drifts.

The promises are those of ``docs/topics.md``: every producer is idempotent with
``acks=all`` and the murmur2 partitioner, so one job's records are in order on
one partition; the worker writes a job's events in transactions, so a reader
must consume ``read_committed`` to see each event exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from schemas.export import SCHEMA_DIR
from services.core.kafka import TopicSpec
from services.core.lifecycle import TOKENS_OFFSET_HEADER
from services.core.settings import Settings
from services.core.topics import topic_specs

ASYNCAPI_PATH = SCHEMA_DIR.parent / "asyncapi.yaml"

READ_COMMITTED = (
    "Consume with isolation.level=read_committed: the worker writes in transactions, and a "
    "read_uncommitted reader would see the events of an attempt that was aborted (a worker "
    "killed mid-job) beside those of the attempt that replaced it."
)
TRACE_HEADERS = {
    "traceparent": {"type": "string", "description": "W3C trace context of a traced job."},
    "tracestate": {"type": "string", "description": "W3C trace state, when the trace has one."},
}

MESSAGES: dict[str, dict[str, Any]] = {
    "JobCommand": {
        "file": "JobCommand.schema.json",
        "key": "the job_id (UTF-8)",
        "summary": "A job to run: its request, tenant, attempt and, on the retry topic, "
        "not_before.",
    },
    "JobEvent": {
        "file": "JobEvent.schema.json",
        "key": "the job_id (UTF-8)",
        "summary": "One event of a job: queued, started, token, retrying, completed, failed or "
        "cancelled; (attempt, seq) orders a job's events and names duplicates.",
    },
    "JobState": {
        "file": "JobState.schema.json",
        "key": "the job_id (UTF-8); a null value (tombstone) when the job left the state",
        "summary": "The latest state of a job, written by the aggregator.",
    },
    "Control": {
        "file": "Control.schema.json",
        "key": "the job_id (cancel) or the batch_id (pause_batch, resume_batch, cancel_batch)",
        "summary": "An instruction every worker reads.",
    },
    "TenantPolicy": {
        "file": "TenantPolicy.schema.json",
        "key": "the tenant (UTF-8); a null value when its policy was removed",
        "summary": "A tenant's weight, concurrency cap, quotas and budgets, as an admin set them.",
    },
    "ApiKey": {
        "file": "ApiKey.schema.json",
        "key": "the key's id (UTF-8); a null value (tombstone) when the key was revoked",
        "summary": "An API key made at run time: its tenant, role and SHA-256, never the key.",
    },
    "TenantSpend": {
        "file": "TenantSpend.schema.json",
        "key": "the tenant (UTF-8)",
        "summary": "What a tenant spent this UTC day and month, read from ClickHouse.",
    },
    "DeadLetter": {
        "file": "DeadLetter.schema.json",
        "key": "the job_id, or the key of the record that could not be read",
        "summary": "A record that could not be processed: the command or its bytes, and why.",
    },
}


def channels(settings: Settings) -> dict[str, dict[str, Any]]:
    """What each topic is for; its address, partitions and config come from the specs."""
    t = settings.topics
    out: dict[str, dict[str, Any]] = {}
    for priority, name in t.jobs.items():
        out[f"jobs.{priority.value}"] = {
            "address": name,
            "message": "JobCommand",
            "description": f"Commands of {priority.value}-priority jobs, written by the ingest "
            "after the job's queued event was confirmed; read by the workers' group.",
            "order": "per job (one partition per job_id)",
        }
    out["jobs.control"] = {
        "address": t.control,
        "message": "Control",
        "description": "Cancels and batch instructions; every worker reads all of it.",
        "order": "per job or batch",
    }
    out["jobs.retry"] = {
        "address": t.retry,
        "message": "JobCommand",
        "description": "Commands of attempts that wait for their not_before.",
        "order": "per job",
    }
    out["jobs.dlq"] = {
        "address": t.dlq,
        "message": "DeadLetter",
        "description": "What could not be processed, with its error (30 days).",
        "order": "per job",
    }
    out["tokens"] = {
        "address": t.tokens,
        "message": "JobEvent",
        "description": "Every event of every job, tokens included: the stream the gateways "
        "serve. An SSE event id is the record's offset here.",
        "order": "per job; within an attempt by seq",
    }
    out["lifecycle"] = {
        "address": t.lifecycle,
        "message": "JobEvent",
        "description": "A byte-for-byte copy of every event but the tokens (of the tokens the "
        "first, then one per progress tick): for readers of what happens to jobs rather than "
        f"of their text. The queued and started copies carry the `{TOKENS_OFFSET_HEADER}` "
        "header: the event's offset on the tokens topic. Co-partitioned with the tokens.",
        "order": "per job, on the partition number of its tokens",
        "headers": {TOKENS_OFFSET_HEADER: "ASCII digits: the copied event's offset on tokens"},
    }
    out["job-state"] = {
        "address": t.job_state,
        "message": "JobState",
        "description": "The latest state of every job (compacted): a downstream table.",
        "order": "per job",
    }
    out["tenants"] = {
        "address": t.tenants,
        "message": "TenantPolicy",
        "description": "Each tenant's policy (compacted), written by PUT /v1/admin/tenants; "
        "every process reads all of it.",
        "order": "one partition: the order the admin API wrote them",
    }
    out["keys"] = {
        "address": t.keys,
        "message": "ApiKey",
        "description": "The API keys made at run time (compacted), written by the admin API; "
        "every process reads all of it and honours a change within about a second.",
        "order": "one partition: the order the admin API wrote them",
    }
    out["spend"] = {
        "address": t.spend,
        "message": "TenantSpend",
        "description": "Each tenant's spend (compacted), published by the analytics part about "
        "once a second when it changed; ingest and the workers enforce budgets with it.",
        "order": "one partition",
    }
    return out


def _bindings(spec: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {
        "cleanup.policy": [spec.config.get("cleanup.policy", "delete")],
        "max.message.bytes": int(spec.config["max.message.bytes"]),
    }
    if "retention.ms" in spec.config:
        config["retention.ms"] = int(spec.config["retention.ms"])
    return {
        "kafka": {
            "topic": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "topicConfiguration": config,
            "bindingVersion": "0.5.0",
        }
    }


def document(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings.model_construct()  # the defaults, whatever the environment
    specs = {s.name: s for s in topic_specs(settings)}
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel_id, c in channels(settings).items():
        spec = specs[c["address"]]
        headers = {name: dict(h) for name, h in TRACE_HEADERS.items()}
        for name, what in c.get("headers", {}).items():
            headers[name] = {"type": "string", "description": what}
        doc_channels[channel_id] = {
            "address": c["address"],
            "description": f"{c['description']} Order: {c['order']}.",
            "messages": {c["message"]: {"$ref": f"#/components/messages/{c['message']}"}},
            "bindings": _bindings(spec),
            "x-record-headers": headers,
        }
        operations[f"receive-{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "description": READ_COMMITTED,
        }
    messages = {
        name: {
            "name": name,
            "summary": m["summary"],
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-07",
                "schema": {"$ref": f"json/{m['file']}"},
            },
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": m["key"]},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        for name, m in MESSAGES.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tokenrelay topics",
            "version": "1",
            "description": (
                "The Kafka topics of tokenrelay, for apps that subscribe to them. Values are "
                "JSON with a `schema` field naming type and major version "
                '(`"tokenrelay.JobEvent/1"`); within a major version fields are only added, '
                "never removed, renamed or narrowed (tests/unit/test_schema_compat.py). All "
                "producers are idempotent (acks=all) and use the murmur2 partitioner, so a "
                "job's records are in order on one partition whatever client reads them. "
                f"{READ_COMMITTED} Names carry the prefix TOKENRELAY_TOPIC_PREFIX "
                f"(`{settings.topic_prefix}` here); partitions and replicas are the defaults "
                "(TOKENRELAY_TOPIC_PARTITIONS, TOKENRELAY_REPLICATION_FACTOR)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": settings.kafka_bootstrap,
                "protocol": "kafka",
                "description": "`make up`'s broker; set your own bootstrap servers.",
            }
        },
        "channels": doc_channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render(doc: dict[str, Any]) -> str:
    header = "# Generated by `make schemas` (services/core/asyncapi.py): do not edit.\n"
    body: str = yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    return header + body


def main(path: Path = ASYNCAPI_PATH) -> None:
    path.write_text(render(document()))


if __name__ == "__main__":
    main()
