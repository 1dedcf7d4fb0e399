"""The thread policy: short units of work use only the CPUs other processes leave free."""

import subprocess
import sys
import time

import pytest
import torch

from napari_clip_guided_sam.model import threads
from napari_clip_guided_sam.model.threads import (
    THREADS_ENV,
    choose_threads,
    cpu_threads,
    other_runnable_threads,
    thread_override,
    threads_for_work,
    usable_cpus,
    work_unit,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_thread_setting_is_restored(monkeypatch):
    monkeypatch.delenv(THREADS_ENV)
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert 1 <= threads_for_work() <= max(before, usable_cpus())


@pytest.mark.parametrize(
    ("others", "ceiling", "expected"),
    [(None, None, 4), (0, None, 4), (1, None, 3), (3, None, 1), (7, None, 1), (0, 2, 2), (3, 2, 1)],
)
def test_threads_follow_the_cpus_other_processes_leave_free(others, ceiling, expected):
    assert choose_threads(usable=4, others=others, ceiling=ceiling) == expected


def test_a_fixed_count_wins_and_a_bad_one_is_refused_with_the_fix():
    assert choose_threads(usable=4, others=3, override=6) == 6
    assert thread_override({}) is None
    assert thread_override({THREADS_ENV: " 3 "}) == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(ValueError, match=THREADS_ENV) as error:
            thread_override({THREADS_ENV: bad})
        assert "whole number" in str(error.value)


def test_a_unit_of_work_runs_on_the_policys_count_and_restores_it(monkeypatch):
    monkeypatch.setattr(threads, "other_runnable_threads", lambda: 10)  # a very busy machine
    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    with work_unit("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv(THREADS_ENV, "1")
    with work_unit(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    with work_unit(torch.device("meta")):  # another device: the CPU setting is left alone
        assert torch.get_num_threads() == before


@linux_only
def test_a_busy_process_is_seen_and_takes_a_thread_away(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    # The kernel's runnable count is a snapshot: a spinning process is descheduled now and
    # then, so one reading may miss it. It must be seen within the deadline.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        seen = False
        while not seen and time.monotonic() < deadline:
            others = other_runnable_threads()
            assert others is not None
            seen = choose_threads(usable_cpus(), others) <= max(1, usable_cpus() - 1)
            time.sleep(0.02)
        assert seen
    finally:
        spinner.kill()
        spinner.wait()
