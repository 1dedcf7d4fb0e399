"""The CPU thread policy: how many intra-op threads each unit of work uses, and OpenMP's wait.

One policy for the CLI, batch jobs, training and the napari workers (docs/performance.md,
"Threads on a busy machine"); this module is the only place that changes torch's thread
count. Every unit of work (a click's decode, an encoder pass, a training step, a batch
slice, an evaluated image) runs in `work_unit`: it waits for its turn in the process's
compute lane (`model.compute_lane`: one unit at a time, first come first served), then
asks `threads_for_work()` and runs on that many threads; the setting is restored after it:

- the ceiling: `CLIP_GUIDED_SAM_THREADS`, if set, is a fixed count, used as is;
  otherwise torch's own setting (which follows `OMP_NUM_THREADS`), at most the CPUs this
  process may use (affinity and a container's CPU quota);
- within the ceiling, only the CPUs other processes leave free at that moment (the kernel's
  count of runnable threads, minus our own), and at least one.

Why: torch splits each operation across its threads and waits for the slowest. When other
processes keep the cores busy, one of our threads is often descheduled and every operation
waits a scheduler time slice for it: on 2 cores with one taken by a training job, SAM's
mask decoder took 1.29 s on 2 threads and 85 ms on 1, and a tiny training step beside three
busy torch processes went from 75 ms to 3 s. On an idle machine all threads are used.
Where the runnable count covers more CPUs than this process may use (a container pinned to
a few cores of a busy host), the choice errs towards one thread, the safe side.

OpenMP's wait: after each parallel region torch's OpenMP threads spin for a while before
they sleep. `OMP_WAIT_POLICY=PASSIVE` makes them sleep at once; measured with
benchmarks/threads_under_load.py it made a training step slower alone and no faster beside
busy processes, so the project leaves OpenMP's default (a user may still set it).

torch's thread count is a process setting; the lane makes sure that one unit at a time
changes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from .compute_lane import COMPUTE_LANE

THREADS_ENV = "CLIP_GUIDED_SAM_THREADS"  # a fixed intra-op thread count for every unit


@functools.cache
def usable_cpus() -> int:
    """CPUs this process may use: its CPU affinity and any CPU quota of its cgroup (a
    container's limit, rounded up), as joblib counts them (read once per process)."""
    import joblib

    return max(1, joblib.cpu_count())


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


def thread_override(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """The fixed thread count the user asked for (`CLIP_GUIDED_SAM_THREADS`), or None."""
    text = environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"{THREADS_ENV}={text!r} is not a thread count: set it to a whole number of at "
            "least 1, or unset it to follow the CPUs that are free."
        )
    return count


def choose_threads(
    usable: int, others: int | None, ceiling: int | None = None, override: int | None = None
) -> int:
    """The policy itself: `override` if given; else the CPUs that `others` (runnable threads
    of other processes; None: unknown) leave of `usable`, at most `ceiling`, at least 1."""
    if override is not None:
        return override
    limit = usable if ceiling is None else min(ceiling, usable)
    if others is not None:
        limit = min(limit, usable - others)
    return max(1, limit)


def threads_for_work() -> int:
    """Intra-op threads for a unit of work starting now (the policy on this moment's load)."""
    import torch

    override = thread_override()
    if override is not None:
        return override
    return choose_threads(usable_cpus(), other_runnable_threads(), torch.get_num_threads())


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Use `count` intra-op CPU threads in this thread meanwhile (None: leave torch's
    setting)."""
    import torch

    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def work_unit(device: Any = None, count: int | None = None) -> Iterator[None]:
    """One unit of model work: its turn in the compute lane, then, on the CPU (`device`
    None: the CPU), `count` intra-op threads or the policy's count at that moment."""
    with COMPUTE_LANE.unit():
        if device is not None and getattr(device, "type", device) != "cpu":
            yield
            return
        with cpu_threads(threads_for_work() if count is None else count):
            yield
