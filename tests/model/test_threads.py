"""Short operations use only the CPUs other processes leave free."""

import subprocess
import sys
import time

import pytest
import torch

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


@linux_only
def test_a_busy_process_takes_a_thread_away():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while other_runnable_threads() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the spinner has started
        assert other_runnable_threads() >= 1
        assert threads_for_short_work(limit=usable_cpus()) <= max(1, usable_cpus() - 1)
    finally:
        spinner.kill()
        spinner.wait()
