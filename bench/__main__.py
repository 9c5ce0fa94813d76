"""``make bench``: run every benchmark in turn and print its figures."""

from __future__ import annotations

from bench import aggregator_drain, gateway_fanout, job_state, worker_scheduling


def main() -> None:
    worker_scheduling.main()
    job_state.main()
    aggregator_drain.main()
    gateway_fanout.main([])


if __name__ == "__main__":
    main()
