"""OME-Zarr in napari: an image and its labels open lazily and aligned (the segment widget on
a zarr-backed multiscale layer: tests/_widgets/test_segment_widget.py)."""

import dask.array as da
import numpy as np
from data.conftest import write_ome_zarr

from napari_clip_guided_sam.cli import main

PLUGIN = "napari-clip-guided-sam"


def _stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 300, size=(2, 64, 80)).astype(np.uint16)
    stack[:, 20:36, 24:44] += 2000
    return stack


def test_ome_zarr_labels_reopen_aligned_with_their_image(make_napari_viewer, tmp_path):
    from napari.layers import Image, Labels

    source = write_ome_zarr(tmp_path / "cells.ome.zarr", _stack(), translation=(0.0, 5.0, 7.5))
    command = f"segment {source} -c nucleus -o {tmp_path / 'report'} --preset tiny --device cpu"
    assert main([*command.split(), "--no-progress"]) == 0

    viewer = make_napari_viewer()
    image, labels = viewer.open(str(source), plugin=PLUGIN)
    assert isinstance(image, Image) and isinstance(labels, Labels)
    assert image.multiscale and isinstance(image.data[0], da.Array)  # lazy, two levels
    assert labels.name == "cells_labels" and labels.data.shape == image.data[0].shape
    np.testing.assert_array_equal(labels.scale, image.scale)
    np.testing.assert_array_equal(labels.translate, image.translate)
    assert tuple(image.scale) == (2.0, 0.5, 0.5) and tuple(image.translate) == (0.0, 5.0, 7.5)
    assert [str(u) for u in labels.units] == [str(u) for u in image.units] == ["micrometer"] * 3

    # a standalone label store (--format ome.zarr) opens on the same grid too
    out = tmp_path / "out"
    assert main([*command.split(), "-o", str(out), "--format", "ome.zarr", "--no-progress"]) == 0
    [alone] = viewer.open(str(out / "cells_labels.ome.zarr"), plugin=PLUGIN)
    assert isinstance(alone, Labels) and alone.data.shape == labels.data.shape
    np.testing.assert_array_equal(alone.scale, image.scale)
    np.testing.assert_array_equal(alone.translate, image.translate)
    np.testing.assert_array_equal(np.asarray(alone.data), np.asarray(labels.data))
