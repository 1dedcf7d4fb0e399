"""Two runs into one output folder: the second is refused, naming the first; a killed run's
lock never blocks.

Defect 8 of issue 9: two `segment` runs into one folder fought (the second rewrote the report
as "0 done, 6 failed") and two `train` runs into one folder both wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_clip_guided_sam._locking import FolderBusyError, output_lock
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_batch

from .helpers import (
    TINY,
    assert_unchanged,
    check_user_error,
    cli_environment,
    run_cli,
    snapshot,
    train_args,
    write_pairs,
)


class LockHolder:
    """Another process holding the lock of `folder`, as a running segment or train does."""

    def __init__(self, folder):
        code = (
            "import time; from napari_clip_guided_sam._locking import output_lock\n"
            f"with output_lock({os.fspath(folder)!r}, 'clip-guided-sam segment'):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(600)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_environment()
        )
        assert self.process.stdout.readline().strip() == "locked"

    def kill(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def holder_of(tmp_path):
    holders = []

    def hold(folder):
        holders.append(LockHolder(folder))
        return holders[-1]

    yield hold
    for holder in holders:
        holder.kill()


def test_a_second_segment_run_is_refused_naming_the_first(images, tmp_path, holder_of):
    output = tmp_path / "out"
    assert run_cli("segment", images, "-c", "nucleus", "-o", output, *TINY).code == 0
    before = snapshot(output)
    holder = holder_of(output)
    result = run_cli("segment", images, "-c", "nucleus", "-o", output, *TINY, "--overwrite")
    check_user_error(
        result,
        1,
        "another run is writing to",
        f"process {holder.process.pid}",
        "clip-guided-sam segment",
        "choose another output folder",
    )
    assert_unchanged(before)  # the report and the labels of the first run are untouched


def test_a_second_training_run_is_refused_naming_the_first(tmp_path, holder_of):
    images, labels = write_pairs(tmp_path, count=1)
    run = tmp_path / "run"
    holder = holder_of(run)
    result = run_cli(
        *train_args(images, labels, run),
        "--max-steps",
        "1",
    )
    check_user_error(result, 1, "another run is writing to", f"process {holder.process.pid}")
    assert not (run / "last.safetensors").exists()


def test_a_killed_runs_lock_does_not_block(images, tmp_path, holder_of):
    output = tmp_path / "out"
    holder_of(output).kill()  # SIGKILL: no chance to release anything
    result = run_cli("segment", images, "-c", "nucleus", "-o", output, *TINY)
    assert result.code == 0, result.err


def test_two_batches_in_one_program_take_turns(images, tmp_path, predictor):
    """Two panels of one napari session into the same folder: the second is refused."""
    options = SegmentOptions(class_names=("nucleus",))
    first = segment_batch(predictor, images, tmp_path / "out", options)
    next(first)  # the first holds the folder
    second = segment_batch(predictor, images, tmp_path / "out", options)
    with pytest.raises(FolderBusyError, match="this program"):
        next(second)
    first.close()  # closing (cancel) frees the folder
    assert list(segment_batch(predictor, images, tmp_path / "out", options))


def test_the_lock_is_per_folder(tmp_path):
    with output_lock(tmp_path / "a", "first"), output_lock(tmp_path / "b", "second"):
        with pytest.raises(FolderBusyError, match="first"):
            with output_lock(tmp_path / "a", "third"):
                pass
