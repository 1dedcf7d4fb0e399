"""One stack split into ranges of slices on a dask LocalCluster of 2 worker processes: the
serial run's labels, one report row, a rerun skips it, a failed range leaves no output."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam._atomic import is_temporary
from napari_clip_guided_sam.data.normalize import NormalizeConfig
from napari_clip_guided_sam.data.reader import read_image
from napari_clip_guided_sam.inference.batch import (
    BatchFinished,
    FileDone,
    FileFailed,
    FileSkipped,
    SegmentOptions,
    segment_batch,
)
from napari_clip_guided_sam.inference.batch.distributed import segment_batch_on_cluster
from napari_clip_guided_sam.inference.batch.ranges import plan_ranges
from napari_clip_guided_sam.inference.instances import InstanceConfig
from napari_clip_guided_sam.inference.predictor import Predictor

pytest.importorskip("distributed")

# Per-stack percentiles (computed once, on the client) and instances not linked across
# slices: what a split must reproduce exactly.
UNLINKED = SegmentOptions(
    class_names=("disk",),
    normalize=NormalizeConfig(mode="stack"),
    instances=InstanceConfig("connected"),
    link_slices=False,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, drifting_disk) -> Path:
    """A folder holding the 12-slice stack of a drifting disk (3 ranges of 5 slices)."""
    folder = tmp_path_factory.mktemp("stack")
    tifffile.imwrite(
        folder / "stack.tif",
        drifting_disk[0],
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "ZYXS", "spacing": 2.0, "unit": "um"},
    )
    return folder


def serial(disk_checkpoint, source: Path, output: Path, options: SegmentOptions) -> Path:
    predictor = Predictor.from_preset("tiny", disk_checkpoint, "cpu", "fp32")
    for _ in segment_batch(predictor, source, output, options):
        pass
    return output


def on_cluster(cluster_client, disk_checkpoint, source, output, options, slices_per_task=5) -> list:
    load = functools.partial(Predictor.from_preset, "tiny", disk_checkpoint, "cpu", "fp32")
    run = segment_batch_on_cluster(
        cluster_client, load, source, output, options, slices_per_task=slices_per_task
    )
    return list(run)


def contents(path: Path) -> dict[str, bytes]:
    """Every file of an output (a TIFF, or a zarr store's folder) and its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}  # fmt: skip


def range_tasks(cluster_client) -> set[str]:
    """The keys of every range task the scheduler has run."""

    def keys(dask_scheduler=None) -> set[str]:
        return {str(entry[0]) for entry in dask_scheduler.transition_log
                if "_segment_range" in str(entry[0])}  # fmt: skip

    return cluster_client.run_on_scheduler(keys)


def test_ranges_cover_the_stack():
    assert plan_ranges(12, 5) == [range(0, 5), range(5, 10), range(10, 12)]
    assert plan_ranges(4, 5) == [range(0, 4)]
    with pytest.raises(ValueError, match="at least 1"):
        plan_ranges(4, 0)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        (dataclasses.replace(UNLINKED, output_format="ome.zarr"), "stack_labels.ome.zarr"),
        (SegmentOptions(class_names=("disk",)), "stack_labels.tif"),
    ],
    ids=["instances-ome-zarr", "classes-tiff"],
)
def test_a_split_stack_writes_the_serial_labels_and_a_rerun_skips_it(
    cluster_client, disk_checkpoint, stack, tmp_path, options, name
):
    expected = serial(disk_checkpoint, stack, tmp_path / "serial", options)
    before = range_tasks(cluster_client)
    events = on_cluster(cluster_client, disk_checkpoint, stack, tmp_path / "split", options)

    assert len(range_tasks(cluster_client) - before) == 3  # 12 slices, 5 a task

    assert [type(e) for e in events] == [FileDone, BatchFinished]
    want, got = read_image(expected / name), read_image(tmp_path / "split" / name)
    np.testing.assert_array_equal(got.array, want.array)
    assert np.asarray(want.array).max() >= 1  # real labels
    assert (got.axes, got.pixel_size, got.unit) == (want.axes, want.pixel_size, want.unit)
    # The same bytes: dtype, chunks, axes, scale and provenance as the serial output.
    assert contents(tmp_path / "split" / name) == contents(expected / name)
    report = json.loads((tmp_path / "split" / "segment_report.json").read_text())
    assert [(f["input"].endswith("stack.tif"), f["status"], f["slices"])
            for f in report["files"]] == [(True, "done", 12)]  # fmt: skip
    assert not [p for p in (tmp_path / "split").iterdir() if is_temporary(p.name)]

    again = on_cluster(cluster_client, disk_checkpoint, stack, tmp_path / "split", options)
    assert [type(e) for e in again] == [FileSkipped, BatchFinished]
    assert contents(tmp_path / "split" / name) == contents(expected / name)


def test_linked_instances_keep_the_stack_in_one_task(
    cluster_client, disk_checkpoint, stack, tmp_path
):
    linked = dataclasses.replace(UNLINKED, link_slices=True, output_format="ome.zarr")
    name = "stack_labels.ome.zarr"
    expected = serial(disk_checkpoint, stack, tmp_path / "serial", linked)
    before = range_tasks(cluster_client)
    on_cluster(cluster_client, disk_checkpoint, stack, tmp_path / "cluster", linked)

    assert range_tasks(cluster_client) == before

    assert contents(tmp_path / "cluster" / name) == contents(expected / name)
    # One chain through the disk's slices: a split would have restarted it in each range.
    assert len(np.unique(np.asarray(read_image(expected / name).array)[2:10])) == 2


def test_a_failed_range_leaves_no_output(cluster_client, disk_checkpoint, stack, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    broken = source / "stack.tif"
    tifffile.imwrite(broken, tifffile.imread(stack / "stack.tif"), compression="zlib",
                     imagej=True, metadata={"axes": "ZYXS"})  # fmt: skip
    with tifffile.TiffFile(broken) as tif:  # the last slice's compressed data, garbled
        page = tif.pages[-1]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    with open(broken, "r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * count)
    output = tmp_path / "out"
    options = SegmentOptions(class_names=("disk",), output_format="ome.zarr")  # per slice

    before = range_tasks(cluster_client)
    events = on_cluster(cluster_client, disk_checkpoint, source, output, options)

    assert range_tasks(cluster_client) - before  # it was split
    assert [type(e) for e in events] == [FileFailed, BatchFinished]
    assert "corrupt" in events[0].reason
    assert not (output / "stack_labels.ome.zarr").exists()
    assert not [p.name for p in output.iterdir() if is_temporary(p.name)]  # no scratch


def test_ranges_across_two_leading_axes(cluster_client, disk_checkpoint, drifting_disk, tmp_path):
    """A T x Z stack (3 x 4 slices): ranges of 5 slices cross from one time point to the
    next and still land on their own slices."""
    source = tmp_path / "source"
    source.mkdir()
    series = drifting_disk[0].reshape(3, 4, *drifting_disk[0].shape[1:])
    tifffile.imwrite(source / "stack.tif", series, imagej=True, metadata={"axes": "TZYXS"})
    options = SegmentOptions(class_names=("disk",), output_format="ome.zarr")
    name = "stack_labels.ome.zarr"
    expected = serial(disk_checkpoint, source, tmp_path / "serial", options)
    before = range_tasks(cluster_client)
    on_cluster(cluster_client, disk_checkpoint, source, tmp_path / "split", options)

    assert len(range_tasks(cluster_client) - before) == 3
    assert read_image(expected / name).axes == "TZYX"
    assert contents(tmp_path / "split" / name) == contents(expected / name)


def test_a_split_ome_zarr_stack_gets_its_labels_in_its_own_labels_group(
    cluster_client, disk_checkpoint, drifting_disk, tmp_path
):
    from data.conftest import write_ome_zarr

    grey = np.ascontiguousarray(drifting_disk[0][..., 0])
    for run in ("serial", "split"):
        write_ome_zarr(tmp_path / run / "in" / "stack.ome.zarr", grey, chunks=(1, 48, 64))
    options = SegmentOptions(class_names=("disk",))  # --format auto: the image's labels
    serial(disk_checkpoint, tmp_path / "serial" / "in", tmp_path / "serial" / "out", options)
    before = range_tasks(cluster_client)
    on_cluster(
        cluster_client,
        disk_checkpoint,
        tmp_path / "split" / "in",
        tmp_path / "split" / "out",
        options,
    )

    assert len(range_tasks(cluster_client) - before) == 3
    serial_labels = tmp_path / "serial" / "in" / "stack.ome.zarr" / "labels"
    split_labels = tmp_path / "split" / "in" / "stack.ome.zarr" / "labels"
    assert contents(split_labels) == contents(serial_labels)  # the group, its list, the image
    assert len(contents(split_labels)) > 2
