"""``make bench``: run every benchmark in turn and print its figures."""

from __future__ import annotations

from bench import worker_scheduling


def main() -> None:
    worker_scheduling.main()


if __name__ == "__main__":
    main()
