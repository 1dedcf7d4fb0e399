"""OME-Zarr in and out: lazy chunked reads with the NGFF scale, labels written beside the
image (or standalone) that reopen on its grid, atomically and never over a user's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

from napari_clip_guided_sam._atomic import atomic_folder, is_temporary
from napari_clip_guided_sam.data.image import ImageReadError
from napari_clip_guided_sam.data.label_writer import label_provenance, write_labels
from napari_clip_guided_sam.data.ome_zarr import (
    geometry_of,
    is_label_image,
    label_images,
    open_zarr_image,
    read_zarr_image,
    write_label_zarr,
)
from napari_clip_guided_sam.data.reader import read_image, read_image_lazy

from .conftest import write_ome_zarr


class CountingStore(WrapperStore):
    """A zarr store that records the keys read through it."""

    def __init__(self, store):
        super().__init__(store)
        self.keys: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        self.keys.append(key)
        return await super().get(key, prototype, byte_range)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_reads_with_its_axes_scale_and_unit(tmp_path, version):
    stack = np.arange(3 * 20 * 24, dtype=np.uint16).reshape(3, 20, 24)
    path = write_ome_zarr(tmp_path / "cells.ome.zarr", stack, version=version)

    image = read_image_lazy(path)
    assert image.axes == "ZYX" and image.pixel_size == (2.0, 0.5, 0.5) and image.unit == "µm"
    geometry = geometry_of(image)
    assert geometry is not None and geometry.version == version
    assert geometry.translation == (0.0, 10.0, 20.0) and geometry.levels == ("0", "1")
    np.testing.assert_array_equal(np.asarray(image.array[1]), stack[1])
    assert read_image(path).name == "cells.ome.zarr"
    np.testing.assert_array_equal(read_image(path).array, stack)


def test_channel_and_time_axes_take_their_letters(tmp_path):
    data = np.zeros((2, 3, 16, 16), dtype=np.uint8)
    path = write_ome_zarr(
        tmp_path / "movie.ome.zarr", data, ("t", "c", "y", "x"), (1.0, 1.0, 0.3, 0.3), (0,) * 4
    )
    image = read_image(path)
    assert image.axes == "TCYX" and image.pixel_size == (0.3, 0.3)


def test_a_lazy_read_reads_only_the_chunks_of_the_slice(tmp_path):
    stack = np.random.default_rng(0).integers(0, 999, (6, 32, 32)).astype(np.uint16)
    path = write_ome_zarr(tmp_path / "big.ome.zarr", stack, chunks=(1, 16, 16))
    store = CountingStore(LocalStore(str(path), read_only=True))

    def chunks_read() -> set[str]:  # level 0's chunk keys (zarr v2: "0/z.y.x")
        names = (k.split("/", 1) for k in store.keys if "/" in k)
        return {f"0/{name}" for level, name in names if level == "0" and name[0].isdigit()}

    image = open_zarr_image(store)
    assert chunks_read() == set()
    np.testing.assert_array_equal(np.asarray(image.array[4]), stack[4])
    assert chunks_read() == {f"0/4.{i}.{j}" for i in range(2) for j in range(2)}  # 4 of 24


def test_plain_zarr_array_reads_without_calibration(tmp_path):
    array = zarr.create_array(str(tmp_path / "raw.zarr"), shape=(4, 16, 16), dtype="uint8")
    array[:] = 7
    image = read_image_lazy(tmp_path / "raw.zarr")
    assert image.axes == "ZYX" and image.pixel_size is None and int(image.array.sum()) == 7 * 1024


def test_a_group_without_multiscales_or_a_zarr_file_is_a_clear_error(tmp_path):
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ImageReadError, match="multiscales"):
        read_image(tmp_path / "empty.zarr")
    (tmp_path / "file.zarr").write_bytes(b"not a store")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path / "file.zarr")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_in_the_image_group_copy_its_grid_and_provenance(tmp_path, version):
    stack = np.zeros((2, 3, 20, 24), dtype=np.uint16)  # Z, C, Y, X
    path = write_ome_zarr(
        tmp_path / "cells.ome.zarr",
        stack,
        ("z", "c", "y", "x"),
        (2.0, 1.0, 0.5, 0.5),
        (4.0, 0.0, 10.0, 20.0),
        version=version,
    )
    image = read_image_lazy(path)
    labels = np.zeros((2, 20, 24), dtype=np.uint8)
    labels[1, 5:9, 6:12] = 1
    target = path / "labels" / "cells_labels"
    write_label_zarr(
        target, labels, "ZYX", {}, None, provenance={"preset": "tiny"}, like=geometry_of(image)
    )

    assert label_images(path) == ["cells_labels"] and is_label_image(target)
    written = read_zarr_image(target, lazy=False)
    np.testing.assert_array_equal(written.array, labels)
    geometry = geometry_of(written)
    assert geometry is not None and geometry.version == version
    assert geometry.scale == (2.0, 0.5, 0.5) and geometry.translation == (4.0, 10.0, 20.0)
    assert written.unit == "µm" and label_provenance(target) == {"preset": "tiny"}


def test_existing_labels_are_kept_unless_overwrite_and_no_temporaries_remain(tmp_path):
    path = write_ome_zarr(tmp_path / "a.ome.zarr", np.zeros((2, 8, 8), np.uint8))
    like = geometry_of(read_image_lazy(path))
    target = path / "labels" / "mine"
    write_label_zarr(target, np.ones((2, 8, 8), np.uint8), "ZYX", {}, None, like=like)
    with pytest.raises(FileExistsError):
        write_label_zarr(target, np.full((2, 8, 8), 2, np.uint8), "ZYX", {}, None, like=like)
    assert int(read_zarr_image(target, lazy=False).array.max()) == 1

    write_label_zarr(
        target, np.full((2, 8, 8), 2, np.uint8), "ZYX", {}, None, like=like, overwrite=True
    )
    assert int(read_zarr_image(target, lazy=False).array.min()) == 2
    assert label_images(path) == ["mine"]  # listed once
    assert not [p for p in (path / "labels").iterdir() if is_temporary(p.name)]


def test_a_failed_folder_write_leaves_the_old_store_and_no_temporary(tmp_path):
    target = tmp_path / "out.ome.zarr"
    target.mkdir()
    (target / "old").write_text("kept")

    def fail(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="cannot write"):
        atomic_folder(target, fail, overwrite=True)
    assert (target / "old").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.zarr"]


def test_standalone_label_store_keeps_the_pixel_size(tmp_path):
    from napari_clip_guided_sam.data.image import ImageData

    like = ImageData(np.zeros((3, 8, 8), np.uint8), "ZYX", (2.0, 0.25, 0.25), "µm")
    labels = np.repeat(np.eye(8, dtype=np.uint8)[None], 3, axis=0)
    path = write_labels(tmp_path / "labels.ome.zarr", labels, like)
    back = read_image(path)
    assert back.axes == "ZYX" and back.pixel_size == (2.0, 0.25, 0.25) and back.unit == "µm"
    np.testing.assert_array_equal(back.array, labels)


def test_folders_list_zarr_stores_as_images(tmp_path):
    from napari_clip_guided_sam.data.folders import list_images

    write_ome_zarr(tmp_path / "b.ome.zarr", np.zeros((2, 8, 8), np.uint8))
    write_labels(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "notes.zarr").write_text("a file, not a store")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.ome.zarr"]


def test_a_killed_runs_temporary_folder_in_a_labels_group_is_removed(tmp_path):
    import subprocess
    import sys

    from napari_clip_guided_sam._atomic import temporary_folder

    path = write_ome_zarr(tmp_path / "a.ome.zarr", np.zeros((2, 8, 8), np.uint8))
    like = geometry_of(read_image_lazy(path))
    (path / "labels").mkdir()
    script = "import sys; from napari_clip_guided_sam._atomic import temporary_folder as t; "
    script += f"print(t({str(path / 'labels')!r}, 'mine'))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    stale = Path(done.stdout.strip())  # its process has exited: stale
    live = temporary_folder(path / "labels", "other")  # ours, running: kept
    assert stale.is_dir() and is_temporary(stale.name)
    write_label_zarr(
        path / "labels" / "mine", np.ones((2, 8, 8), np.uint8), "ZYX", {}, None, like=like
    )
    assert not stale.exists() and live.exists()


def test_a_store_asking_to_unpickle_is_refused_and_runs_nothing(tmp_path):
    import json
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = tmp_path / "evil.zarr"
    store.mkdir()
    header = {"zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|u1", "order": "C"}
    header.update(fill_value=0, filters=None, compressor={"id": "pickle", "protocol": 5})
    (store / ".zarray").write_text(json.dumps(header))
    (store / "0").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ImageReadError, match="not a zarr store"):
        read_image(store)
    assert not marker.exists()
