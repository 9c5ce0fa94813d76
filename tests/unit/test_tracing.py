"""Trace context in Kafka headers: nothing when off, W3C traceparent when on."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.core import tracing


def test_off_a_record_carries_no_header_and_reads_none() -> None:
    assert not tracing.wanted()
    with tracing.TRACER.start_as_current_span("submit job"):
        assert tracing.inject() is None
    assert tracing.extract(None) is None and tracing.extract([]) is None
    assert tracing.extract([("other", b"x")]) is None


def test_a_span_travels_as_traceparent_and_comes_back_as_its_context() -> None:
    tracer = TracerProvider().get_tracer("test")  # a local SDK provider; the global stays off
    with tracer.start_as_current_span("submit job") as span:
        headers = tracing.inject(trace.set_span_in_context(span))
    assert headers is not None
    (name, value), *_ = headers
    sc = span.get_span_context()
    assert name == "traceparent"
    version, trace_id, span_id, flags = value.decode().split("-")
    assert (version, trace_id, span_id) == ("00", f"{sc.trace_id:032x}", f"{sc.span_id:016x}")
    assert int(flags, 16) & 1, "sampled"
    context = tracing.extract([("ignored", b"1"), *headers])
    assert context is not None
    parent = trace.get_current_span(context).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (sc.trace_id, sc.span_id, True)
