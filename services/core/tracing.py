"""A job's trace across the parts: W3C trace context in Kafka headers, OpenTelemetry spans.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set; then each process exports its spans over OTLP/HTTP, as service
``OTEL_SERVICE_NAME`` or ``tokenrelay-<its parts>``. The standard ``OTEL_*``
variables tune the exporter and the batch processor.

One trace follows one job: ingest's ``submit job`` span (its context rides in the
headers of the job's command and ``queued`` event) → the worker's ``run job``
span per attempt (its context rides on every event the attempt publishes) → the
gateway's ``stream job events`` span per stream. Off, nothing is added to any
record and the spans cost a no-op call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
)
"""OpenTelemetry's own variables that a deployment sets for tokenrelay (besides ``OTEL_BSP_*``)."""

Headers = list[tuple[str, bytes]]
"""Kafka record headers, as confluent-kafka takes and gives them."""

TRACER = trace.get_tracer("tokenrelay")
_PROPAGATOR = TraceContextTextMapPropagator()
_FIELDS = frozenset(_PROPAGATOR.fields)
_providers: list[TracerProvider] = []
"""The process's exporting provider, once ``setup`` made it."""


def wanted() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str) -> bool:
    """Export this process's spans over OTLP when an endpoint is configured; True if so."""
    if _providers or not wanted():
        return bool(_providers)
    name = os.environ.get("OTEL_SERVICE_NAME", service)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _providers.append(provider)
    log.info("tracing on: spans of %s exported over OTLP", name)
    return True


def shutdown() -> None:
    """Export what is buffered (the process is stopping)."""
    for provider in _providers:
        provider.shutdown()


def inject(context: Context | None = None) -> Headers | None:
    """The trace context of ``context`` (default: the current span) as Kafka headers;
    None when there is no sampled span (tracing off): the record carries nothing."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return [(k, v.encode()) for k, v in carrier.items()] or None


def extract(headers: Sequence[tuple[str, bytes | None]] | None) -> Context | None:
    """The trace context a record's headers carry, or None."""
    if not headers:
        return None
    carrier = {k: v.decode("latin-1") for k, v in headers if k in _FIELDS and v is not None}
    return _PROPAGATOR.extract(carrier) if carrier else None
