"""One unit of model work at a time, first come first served, re-entrant."""

import threading
import time

import pytest

from napari_clip_guided_sam.model.compute_lane import ComputeLane


def wait_until(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.005)


def test_a_second_unit_waits_until_the_first_has_finished():
    lane = ComputeLane()
    release = threading.Event()
    order = []

    def first():
        with lane.unit():
            order.append("first in")
            release.wait()
            order.append("first out")

    def second():
        with lane.unit():
            order.append("second in")

    a = threading.Thread(target=first)
    a.start()
    wait_until(lambda: order == ["first in"], "first unit")
    b = threading.Thread(target=second)
    b.start()
    wait_until(lambda: lane.waiting == 1, "waiting unit")
    assert order == ["first in"]
    release.set()
    a.join()
    b.join()
    assert order == ["first in", "first out", "second in"]
    assert not lane.busy and lane.waiting == 0


def test_a_loop_that_asks_again_at_once_cannot_starve_a_waiting_unit():
    lane = ComputeLane()
    stop = threading.Event()
    steps = []
    clicked_after: list[int] = []

    def training():
        while not stop.is_set():
            with lane.unit():
                steps.append(1)
                time.sleep(0.001)

    trainer = threading.Thread(target=training)
    trainer.start()
    wait_until(lambda: len(steps) >= 3, "training steps")

    def click():
        asked = len(steps)
        with lane.unit():
            clicked_after.append(len(steps) - asked)

    clicker = threading.Thread(target=click)
    clicker.start()
    clicker.join(timeout=30)
    stop.set()
    trainer.join()
    assert not clicker.is_alive()
    assert clicked_after[0] <= 2  # in after the step running when it asked (and at most one)


def test_the_same_thread_may_enter_again_and_an_error_frees_the_lane():
    lane = ComputeLane()
    with lane.unit():
        with lane.unit():
            assert lane.busy
        assert lane.busy
    assert not lane.busy
    with pytest.raises(RuntimeError), lane.unit():
        raise RuntimeError("boom")
    assert not lane.busy
    with lane.unit():  # free again
        assert lane.busy
