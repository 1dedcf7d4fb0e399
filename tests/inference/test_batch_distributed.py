"""The batch on a dask.distributed LocalCluster of 2 worker processes: the serial run's files,
byte for byte; a worker killed mid-file costs a retry, never a partial file; a rerun skips
what is complete."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam._atomic import is_temporary
from napari_clip_guided_sam.inference.batch import (
    BatchFinished,
    FileDone,
    FileFailed,
    FileSkipped,
    SegmentOptions,
    segment_batch,
)
from napari_clip_guided_sam.inference.batch.distributed import segment_batch_on_cluster
from napari_clip_guided_sam.inference.predictor import Predictor

from .conftest import disk_image

pytest.importorskip("distributed")

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the worker is killed with a POSIX signal"
)

OPTIONS = SegmentOptions(class_names=("disk",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, drifting_disk) -> Path:
    """Four images of disks and the 12-slice stack of a drifting disk."""
    folder = tmp_path_factory.mktemp("inputs")
    rows, cols = np.mgrid[:48, :64]
    for index in range(4):
        mask = (rows - 20 - 3 * index) ** 2 + (cols - 18 - 7 * index) ** 2 <= (6 + index) ** 2
        tifffile.imwrite(folder / f"image{index}.tif", disk_image(mask, seed=index))
    tifffile.imwrite(folder / "stack.tif", drifting_disk[0], imagej=True, metadata={"axes": "ZYXS"})
    return folder


@pytest.fixture(scope="module")
def serial(inputs, disk_checkpoint, tmp_path_factory) -> Path:
    """The serial run's outputs (one process, the same model file)."""
    output = tmp_path_factory.mktemp("serial")
    predictor = Predictor.from_preset("tiny", disk_checkpoint, "cpu", "fp32")
    for _ in segment_batch(predictor, inputs, output, OPTIONS):
        pass
    return output


def on_cluster(cluster_client, disk_checkpoint, inputs, output):
    """The cluster run: its events and summary."""
    load = functools.partial(Predictor.from_preset, "tiny", disk_checkpoint, "cpu", "fp32")
    events = list(segment_batch_on_cluster(cluster_client, load, inputs, output, OPTIONS))
    return events


def label_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_labels.tif"))}


def test_workers_write_the_serial_files_and_a_rerun_skips_them(
    cluster_client, disk_checkpoint, inputs, serial, tmp_path
):
    events = on_cluster(cluster_client, disk_checkpoint, inputs, tmp_path)

    expected = label_files(serial)
    assert len(expected) == 5 and label_files(tmp_path) == expected
    assert any(tifffile.imread(serial / name).any() for name in expected)  # real labels
    finished = events[-1]
    assert isinstance(finished, BatchFinished)
    assert (finished.n_done, finished.n_failed, finished.n_skipped) == (5, 0, 0)
    assert sorted(e.path.name for e in events if isinstance(e, FileDone)) == sorted(
        p.name for p in inputs.iterdir()
    )
    # One report merges every worker's files.
    report = (tmp_path / "segment_report.csv").read_text()
    assert report.count(",done,") == 5

    again = on_cluster(cluster_client, disk_checkpoint, inputs, tmp_path)
    assert sum(isinstance(e, FileSkipped) for e in again) == 5
    assert label_files(tmp_path) == expected


def load_then_die_once_in_the_stack(disk_checkpoint: Path, output: Path, marker: Path):
    """A worker's model whose process kills itself, once per test (the marker file), at the
    first slice it segments while the stack is being written: a worker dying mid-file
    (the stack, or an image beside it) at a known point, not a race with a file watcher.
    Its last finished file may not have reached the scheduler yet, so dask may run that
    task again too: the retry must find the finished output and count it as done."""
    predictor = Predictor.from_preset("tiny", disk_checkpoint, "cpu", "fp32")
    segment = predictor.segment

    def segment_or_die(*args, **kwargs):
        writing_the_stack = any(
            p.name.startswith(".stack") and is_temporary(p.name) for p in output.iterdir()
        )
        if writing_the_stack:
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return segment(*args, **kwargs)

    predictor.segment = segment_or_die  # type: ignore[method-assign]
    return predictor


def test_a_worker_killed_mid_file_is_retried_without_a_partial_file(
    cluster_client, disk_checkpoint, inputs, serial, tmp_path
):
    output, marker = tmp_path / "out", tmp_path / "killed"
    output.mkdir()
    load = functools.partial(load_then_die_once_in_the_stack, disk_checkpoint, output, marker)
    events = list(segment_batch_on_cluster(cluster_client, load, inputs, output, OPTIONS))

    assert marker.exists(), "no worker died writing the stack"
    failures = [f"{e.path.name}: {e.reason}" for e in events if isinstance(e, FileFailed)]
    assert failures == []
    assert (events[-1].n_done, events[-1].n_failed) == (5, 0)
    assert label_files(output) == label_files(serial)
    assert not [p.name for p in output.iterdir() if is_temporary(p.name)]
