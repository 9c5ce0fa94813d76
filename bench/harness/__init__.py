"""The benchmark harness behind ``tokenrelay bench``: tokenrelay against direct streaming.

Modules: ``stack`` (our own stack, or ``--url``), ``baseline`` (the fake provider
streamed with no Kafka), ``http`` and ``watch`` (the load and the SSE watchers, in a
child process), ``scenarios`` (steady, max, ingest, fanout, priority), ``report``
(pure figures, verdicts, table, JSON) and ``cli`` (the command).
"""
