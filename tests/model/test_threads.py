"""Short operations use only the CPUs other processes leave free."""

import subprocess
import sys
import time

import pytest
import torch

from napari_clip_guided_sam.model import threads
from napari_clip_guided_sam.model.threads import (
    cpu_threads,
    other_runnable_threads,
    threads_for_short_work,
    usable_cpus,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert 1 <= threads_for_short_work() <= before
    assert threads_for_short_work(limit=1) == 1


@pytest.mark.parametrize(
    ("busy", "expected"),
    [(None, 4), (0, 4), (1, 3), (3, 1), (7, 1)],
)
def test_threads_follow_the_cpus_other_processes_leave_free(monkeypatch, busy, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads, "other_runnable_threads", lambda: busy)
    assert threads_for_short_work(limit=4) == expected
    assert threads_for_short_work(limit=2) == min(2, expected)


@linux_only
def test_a_busy_process_is_seen_and_takes_a_thread_away():
    # The kernel's runnable count is a snapshot: a spinning process is descheduled now and
    # then, so one reading may miss it. It must be seen within the deadline.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        seen = False
        while not seen and time.monotonic() < deadline:
            seen = threads_for_short_work(limit=usable_cpus()) <= max(1, usable_cpus() - 1)
            time.sleep(0.02)
        assert seen
        assert other_runnable_threads() is not None
    finally:
        spinner.kill()
        spinner.wait()
