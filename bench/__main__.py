"""``make bench``: run every benchmark in turn and print its figures."""

from __future__ import annotations

import subprocess
import sys

from bench import aggregator_drain, gateway_fanout, job_state, worker_scheduling

IN_OWN_PROCESS = ("bench.analytics_sink", "bench.sink_pieces", "bench.analytics_rollup")
"""chDB allows one data directory per process, and each of these opens a fresh one."""


def main() -> None:
    worker_scheduling.main()
    job_state.main()
    aggregator_drain.main()
    gateway_fanout.main([])
    for module in IN_OWN_PROCESS:
        subprocess.run([sys.executable, "-m", module], check=True)


if __name__ == "__main__":
    main()
