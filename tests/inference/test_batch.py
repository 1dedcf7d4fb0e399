"""Batch segmentation of stacks and folders with the tiny preset (real model, CPU)."""

import errno
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam._locking import LOCK_NAME
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.label_writer import write_labels
from napari_clip_guided_sam.data.reader import read_image
from napari_clip_guided_sam.inference.batch import (
    BatchFinished,
    FileDone,
    FileFailed,
    FileSkipped,
    FileStarted,
    SegmentOptions,
    SliceDone,
    segment_batch,
    segment_stack,
    segment_stack_to_array,
    stack,
)
from napari_clip_guided_sam.inference.instances import InstanceConfig, labels_to_instances
from napari_clip_guided_sam.inference.linking import link_stack
from napari_clip_guided_sam.inference.points import read_points_csv
from napari_clip_guided_sam.inference.predictor import Predictor

CLASSES = ("nucleus", "cell")


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_preset("tiny", device="cpu", precision="fp32")


def blobs(n_slices: int, shape=(40, 48), seed=0, dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 300, size=(n_slices, *shape)).astype(dtype)
    stack[:, 10:22, 12:26] += 2000 if dtype == np.uint16 else 150
    return stack


def write_stack(path: Path, stack: np.ndarray, pixel=(2.0, 0.5)) -> Path:
    tifffile.imwrite(
        path,
        stack,
        imagej=True,
        resolution=(1 / pixel[1], 1 / pixel[1]),
        metadata={"axes": "ZYX", "spacing": pixel[0], "unit": "micron"},
    )
    return path


def run(generator):
    """Drive a generator to the end: (events, return value)."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def leftovers(folder: Path) -> list[str]:
    """Hidden files left in `folder`, but for the run lock (kept on purpose, see _locking)."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME
    )


# ---------------------------------------------------------------------------- one stack
def test_stack_output_keeps_axes_pixel_size_and_matches_in_memory(predictor, tmp_path):
    source = write_stack(tmp_path / "stack.tif", blobs(3))
    options = SegmentOptions(class_names=CLASSES)
    events, output = run(segment_stack(predictor, source, tmp_path / "out.tif", options))
    assert [e.index for e in events] == [0, 1, 2] and all(e.total == 3 for e in events)
    written = read_image(output)
    assert written.axes == "ZYX" and written.shape == (3, 40, 48)
    assert written.pixel_size == pytest.approx((2.0, 0.5, 0.5)) and written.unit == "µm"
    assert written.array.max() <= len(CLASSES)
    _, in_memory = run(segment_stack_to_array(predictor, read_image(source), options))
    np.testing.assert_array_equal(written.array, in_memory)
    assert not predictor.has_embeddings(list(CLASSES))  # cache cleared per slice
    assert leftovers(tmp_path) == []


def test_ome_output_and_channel_axis_dropped(predictor, tmp_path):
    stack = np.stack([blobs(2), blobs(2, seed=1)], axis=1)  # Z, C, Y, X
    image = ImageData(stack, "ZCYX", pixel_size=(1.5, 0.25, 0.25), unit="µm")
    options = SegmentOptions(class_names=("nucleus",))
    _, output = run(segment_stack(predictor, image, tmp_path / "out.ome.tif", options))
    written = read_image(output)
    assert written.axes == "ZYX" and written.shape == (2, 40, 48)
    assert written.pixel_size == pytest.approx((1.5, 0.25, 0.25))
    assert tifffile.TiffFile(output).is_ome


def test_singleton_axis_and_missing_axis(predictor, tmp_path):
    image = ImageData(blobs(1), "ZYX", pixel_size=(3.0, 0.5, 0.5), unit="µm")
    options = SegmentOptions(class_names=("nucleus",))
    _, output = run(segment_stack(predictor, image, tmp_path / "one_labels.tif", options))
    written = read_image(output)  # TIFF readers squeeze singleton axes (as napari's does)
    assert written.shape == (40, 48) and written.pixel_size == pytest.approx((0.5, 0.5))
    _, in_memory = run(segment_stack_to_array(predictor, image, options))
    assert in_memory.shape == (1, 40, 48)
    np.testing.assert_array_equal(written.array, in_memory[0])
    no_x = ImageData(np.zeros((3, 40), np.uint8), "ZY")
    with pytest.raises(ValueError, match="need both Y and X"):
        run(segment_stack(predictor, no_x, tmp_path / "bad.tif", options))


def test_cancelled_stack_leaves_no_file(predictor, tmp_path):
    source = write_stack(tmp_path / "stack.tif", blobs(3))
    output = tmp_path / "out" / "labels.tif"
    steps = segment_stack(predictor, source, output, SegmentOptions(class_names=("nucleus",)))
    assert isinstance(next(steps), SliceDone)
    steps.close()  # what the widget does on Cancel
    assert not output.exists()
    assert leftovers(output.parent) == []


def test_existing_output_is_refused_without_overwrite(predictor, tmp_path):
    source = write_stack(tmp_path / "stack.tif", blobs(1))
    (tmp_path / "out.tif").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        run(segment_stack(predictor, source, tmp_path / "out.tif", SegmentOptions(("nucleus",))))
    assert (tmp_path / "out.tif").read_bytes() == b"keep me"


def test_instance_output_splits_the_class_labels(predictor, tmp_path):
    image = read_image(write_stack(tmp_path / "stack.tif", blobs(2)))
    _, classes = run(segment_stack_to_array(predictor, image, SegmentOptions(CLASSES)))
    config = InstanceConfig("connected")
    per_slice = SegmentOptions(CLASSES, instances=config, link_slices=False)
    _, instances = run(segment_stack_to_array(predictor, image, per_slice))
    for z in range(2):
        np.testing.assert_array_equal(instances[z], labels_to_instances(classes[z], 2, config))
    linked = SegmentOptions(CLASSES, instances=config)  # a Z stack: linked by default
    _, ids = run(segment_stack_to_array(predictor, image, linked))
    np.testing.assert_array_equal(ids, link_stack(instances, classes))
    assert not np.array_equal(ids, instances)


def test_a_time_series_is_linked_only_when_asked(predictor):
    movie = ImageData(blobs(3), "TYX")
    config = InstanceConfig("connected")
    _, default = run(
        segment_stack_to_array(predictor, movie, SegmentOptions(CLASSES, instances=config))
    )
    _, classes = run(segment_stack_to_array(predictor, movie, SegmentOptions(CLASSES)))
    per_slice = [labels_to_instances(classes[t], 2, config) for t in range(3)]
    np.testing.assert_array_equal(default, np.stack(per_slice))
    asked = SegmentOptions(CLASSES, instances=config, link_slices=True)
    _, linked = run(segment_stack_to_array(predictor, movie, asked))
    np.testing.assert_array_equal(linked, link_stack(np.stack(per_slice), classes))
    assert not np.array_equal(linked, default)


def test_points_reach_only_their_slice(predictor, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,label,slice\n15,12,1,1\n40,30,0,1\n")
    calls = []

    class Recording(Predictor):
        def segment(self, rgb, class_names, points=None, point_labels=None, threshold=0.5, **kw):
            calls.append(None if points is None else (points.tolist(), point_labels.tolist()))
            return super().segment(rgb, class_names, points, point_labels, threshold, **kw)

    recording = Recording(predictor.model, "cpu", "fp32")
    image = read_image(write_stack(tmp_path / "stack.tif", blobs(3)))
    options = SegmentOptions(("nucleus",), points=read_points_csv(csv))
    run(segment_stack_to_array(recording, image, options))
    assert calls == [None, ([[15.0, 12.0], [40.0, 30.0]], [1, 0]), None]


def test_points_csv_layouts_and_errors(tmp_path):
    napari_csv = tmp_path / "napari.csv"
    napari_csv.write_text("index,axis-0,axis-1,axis-2\n0,2.0,12.0,15.0\n")
    points = read_points_csv(napari_csv)
    assert points.for_slice("a.tif", 2)[0].tolist() == [[15.0, 12.0]]
    assert points.for_slice("a.tif", 1) is None
    per_file = tmp_path / "files.csv"
    per_file.write_text("x,y,file\n1,2,a.tif\n3,4,\n")
    assert len(read_points_csv(per_file).for_slice("b.png", 0)[0]) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,label\n1,2,5\n")
    with pytest.raises(ValueError, match="1 \\(positive\\) or 0"):
        read_points_csv(bad)
    bad.write_text("x,y\n1,oops\n")
    with pytest.raises(ValueError, match="line 2"):
        read_points_csv(bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x,y"):
        read_points_csv(bad)


# ---------------------------------------------------------------------------- folders
@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        write_stack(images / f"s{index}.tif", blobs(2, seed=index))
    return images


def test_interrupted_folder_run_resumes_without_redoing_files(predictor, folder, tmp_path):
    output = tmp_path / "out"
    options = SegmentOptions(class_names=("nucleus",))
    first = segment_batch(predictor, folder, output, options)
    for event in first:
        if isinstance(event, FileDone):
            break  # interrupted after the first file
    first.close()
    done = output / "s0_labels.tif"
    stamp = done.stat().st_mtime_ns
    assert sorted(p.name for p in output.glob("*.tif")) == ["s0_labels.tif"]
    assert leftovers(output) == []
    events, summary = run(segment_batch(predictor, folder, output, options))
    started = [Path(e.path).name for e in events if isinstance(e, FileStarted)]
    assert started == ["s1.tif", "s2.tif"]
    assert [e.path.name for e in events if isinstance(e, FileSkipped)] == ["s0.tif"]
    assert done.stat().st_mtime_ns == stamp
    assert len(summary.done) == 2 and isinstance(events[-1], BatchFinished)
    report = (output / "segment_report.csv").read_text().splitlines()
    assert len(report) == 4 and "output exists" in report[1]


def test_corrupt_and_unsupported_files_are_reported_and_the_rest_complete(
    predictor, folder, tmp_path
):
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    (folder / "notes.txt").write_text("not an image")
    output = tmp_path / "out"
    events, summary = run(segment_batch(predictor, folder, output, SegmentOptions(("nucleus",))))
    failed = [e for e in events if isinstance(e, FileFailed)]
    assert [e.path.name for e in failed] == ["broken.tif"] and "cannot read" in failed[0].reason
    skipped = [e for e in events if isinstance(e, FileSkipped)]
    assert [e.path.name for e in skipped] == ["notes.txt"] and "unsupported" in skipped[0].reason
    assert sorted(p.name for p in output.glob("*.tif")) == [f"s{i}_labels.tif" for i in range(3)]
    finished = events[-1]
    assert (finished.n_done, finished.n_failed, finished.n_skipped) == (3, 1, 1)
    report = (output / "segment_report.csv").read_text()
    assert "broken.tif,failed" in report and "notes.txt,unsupported" in report
    assert summary.stopped is None


def test_output_folder_equal_to_input_is_refused_unless_allowed(predictor, folder):
    options = SegmentOptions(class_names=("nucleus",))
    with pytest.raises(ValueError, match="is the input folder"):
        run(segment_batch(predictor, folder, folder, options))
    run(segment_batch(predictor, folder, folder, options, allow_same_folder=True))
    events, _ = run(segment_batch(predictor, folder, folder, options, allow_same_folder=True))
    # Outputs in the input folder are not taken as inputs on the next run.
    assert not any("labels_labels" in str(getattr(e, "path", "")) for e in events)
    assert events[-1].n_skipped == 3 and events[-1].n_done == 0


def test_files_with_other_channels_fail_clearly(predictor, folder, tmp_path):
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[10:20, 10:20] = 200
    tifffile.imwrite(folder / "z_rgb.tif", rgb, photometric="rgb")
    events, _ = run(segment_batch(predictor, folder, tmp_path / "out", SegmentOptions(("x",))))
    failed = [e for e in events if isinstance(e, FileFailed)]
    assert [e.path.name for e in failed] == ["z_rgb.tif"]
    assert "3 channel(s) but s0.tif has 1" in failed[0].reason


def test_full_disk_stops_the_batch_and_keeps_finished_outputs(
    predictor, folder, tmp_path, monkeypatch
):
    real_write = stack.write_label_tiff
    calls = []

    def fill_disk(path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, *args)

    monkeypatch.setattr(stack, "write_label_tiff", fill_disk)
    output = tmp_path / "out"
    events, summary = run(segment_batch(predictor, folder, output, SegmentOptions(("x",))))
    assert sorted(p.name for p in output.glob("*.tif")) == ["s0_labels.tif"]
    assert read_image(output / "s0_labels.tif").shape == (2, 40, 48)
    assert leftovers(output) == []
    failed = [e for e in events if isinstance(e, FileFailed)]
    assert [e.path.name for e in failed] == ["s1.tif"] and "disk full" in failed[0].reason
    assert "disk full" in events[-1].stopped and "s2.tif" not in str(events)


def test_single_file_and_closed_set_classes(predictor, tmp_path):
    source = tmp_path / "one.tif"
    write_labels(source, blobs(1)[0].astype(np.uint16))  # any image file will do
    with pytest.raises(ValueError, match="no class names"):
        run(segment_batch(predictor, source, tmp_path / "out", SegmentOptions()))
    with pytest.raises(ValueError, match="unsupported file type"):
        (tmp_path / "x.gif").write_bytes(b"GIF89a")
        run(segment_batch(predictor, tmp_path / "x.gif", tmp_path / "out", SegmentOptions(("a",))))


def _anon_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_long_stack_is_never_loaded_whole(tmp_path):
    """The lazy reader behind the batch keeps memory flat (a 36 MB stack here)."""
    import dask.array  # noqa: F401  (imported before measuring)

    from napari_clip_guided_sam.data.reader import read_image_lazy
    from napari_clip_guided_sam.data.slicing import slice_view

    path = tmp_path / "long.tif"
    n, side = 128, 384
    pages = (np.full((side, side), z, np.uint16) for z in range(n))
    with tifffile.TiffWriter(path, imagej=True) as tiff:
        tiff.write(pages, shape=(n, side, side), dtype=np.uint16, metadata={"axes": "ZYX"})
    before = _anon_mb()
    image = read_image_lazy(path)
    values = [int(slice_view(image, (z,))[0, 0]) for z in range(n)]
    assert values == list(range(n))
    assert _anon_mb() - before < 15  # the whole stack would be 36 MB


# ---------------------------------------------------------------------------- OME-Zarr
def test_zarr_stores_in_a_folder_get_labels_beside_the_image_or_as_stores(predictor, tmp_path):
    import zarr
    from data.conftest import write_ome_zarr

    from napari_clip_guided_sam._atomic import is_temporary
    from napari_clip_guided_sam.data.label_writer import label_provenance
    from napari_clip_guided_sam.data.ome_zarr import (
        geometry_of,
        label_images,
        read_zarr_image,
    )

    folder = tmp_path / "in"
    folder.mkdir()
    ome = write_ome_zarr(folder / "cells.ome.zarr", blobs(2), translation=(0.0, 3.0, 4.0))
    zarr.create_array(str(folder / "raw.zarr"), data=blobs(2, seed=3))
    options = SegmentOptions(class_names=("nucleus",))
    events, summary = run(segment_batch(predictor, folder, tmp_path / "out", options))
    assert sorted(p.name for p in summary.done) == ["cells.ome.zarr", "raw.zarr"]

    assert label_images(ome) == ["cells_labels"]  # into the image's own labels group
    written = read_zarr_image(ome / "labels" / "cells_labels", lazy=False)
    geometry = geometry_of(written)
    assert geometry is not None and geometry.translation == (0.0, 3.0, 4.0)
    assert written.pixel_size == (2.0, 0.5, 0.5) and written.unit == "µm"
    _, in_memory = run(segment_stack_to_array(predictor, read_image(ome), options))
    np.testing.assert_array_equal(written.array, in_memory)
    assert label_provenance(ome / "labels" / "cells_labels")["preset"] == "tiny"
    assert read_image(tmp_path / "out" / "raw_labels.ome.zarr").shape == (2, 40, 48)

    _, again = run(segment_batch(predictor, folder, tmp_path / "out", options))
    assert not again.done and len(again.skipped) == 2  # resumed: nothing overwritten

    standalone = SegmentOptions(class_names=("nucleus",), output_format="ome.zarr")
    _, summary = run(segment_batch(predictor, ome, tmp_path / "alone", standalone))
    alone = read_zarr_image(tmp_path / "alone" / "cells_labels.ome.zarr", lazy=False)
    np.testing.assert_array_equal(alone.array, in_memory)
    assert geometry_of(alone).translation == (0.0, 3.0, 4.0)
    assert not [p for p in (ome / "labels").iterdir() if is_temporary(p.name)]
    assert leftovers(tmp_path / "alone") == []
