"""How many CPU threads short operations should use while other processes want the CPUs.

torch splits each operation across its intra-op threads and waits for the slowest. When
another process keeps the cores busy, one of our threads is often descheduled, and an
operation of a few milliseconds waits a whole scheduler time slice for it: on 2 cores
with one taken by a training job, SAM's mask decoder took 1.29 s on 2 threads and 85 ms on
1. On an idle machine the same decoder is about twice as fast on 2 threads as on 1.
Where the runnable count covers more CPUs than this process may use (a container pinned to
a few cores of a busy host), the choice errs towards one thread, the safe side.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch


def usable_cpus() -> int:
    """CPUs this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def other_runnable_threads() -> int | None:
    """Threads of other processes running or ready to run right now; None where unknown.

    A snapshot of the kernel's count of runnable threads (/proc/loadavg, Linux) minus this
    process's own: our OpenMP workers still spinning after the previous operation are not
    competition (inside napari one compute job runs at a time). This process's threads are
    only listed when the count says someone else may be running, so on an idle machine the
    check costs one small read.
    """
    try:
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    if runnable <= 1:
        return 0
    return max(0, runnable - _own_running_threads())


def _own_running_threads() -> int:
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        with contextlib.suppress(OSError, IndexError):
            # The state follows the parenthesised thread name, which may contain spaces.
            running += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
    return max(1, running)  # at least the calling thread


def threads_for_short_work(limit: int | None = None) -> int:
    """Intra-op threads for a short operation now: up to `limit` (default: torch's
    setting), but only as many as the CPUs that other processes leave free (at least 1)."""
    limit = torch.get_num_threads() if limit is None else limit
    busy = other_runnable_threads()
    if busy is None:
        return max(1, limit)
    return max(1, min(limit, usable_cpus() - busy))


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Temporarily use `count` intra-op CPU threads (None: leave torch's setting).

    The setting is process-wide meanwhile."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
