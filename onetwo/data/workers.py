"""How many processes the image steps start (`check` decoding the images, `build` making the composites): the one
rule both follow."""

from __future__ import annotations

import os


def default_workers() -> int:
    """The cores this process may run on (CPU affinity, e.g. taskset or a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(requested: int | None) -> int:
    """`requested` when it is set (composite.workers, --workers), else `default_workers()`."""
    return requested if requested and requested > 0 else default_workers()
