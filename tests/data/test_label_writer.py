"""Writing labels atomically as TIFF / OME-TIFF that read back with their metadata."""

import errno

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam import _atomic
from napari_clip_guided_sam.data import label_writer
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.label_writer import write_labels
from napari_clip_guided_sam.data.reader import read_image


def _labels(shape, top, seed=0):
    return np.random.default_rng(seed).integers(0, top + 1, size=shape)


def test_tiff_round_trip_keeps_axes_pixel_size_and_drops_channels(tmp_path):
    like = ImageData(np.zeros((3, 16, 20, 2), np.uint16), "ZYXC", (2.0, 0.5, 0.25), "µm")
    labels = _labels((3, 16, 20), 300)
    path = write_labels(tmp_path / "labels.tif", labels, like)
    back = read_image(path)
    assert back.axes == "ZYX"
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.pixel_size, (2.0, 0.5, 0.25), rtol=1e-6)
    assert back.unit == "µm"


def test_ome_tiff_round_trip_uint32_time_series(tmp_path):
    like = ImageData(np.zeros((2, 12, 10), np.float32), "TYX", (0.3, 0.4), "µm")
    labels = _labels((2, 12, 10), 70_000)
    labels[0, 0, 0] = 70_000
    path = write_labels(tmp_path / "labels.ome.tif", labels, like)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    back = read_image(path)
    assert back.axes == "TYX"
    assert back.array.dtype == np.uint32
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_allclose(back.pixel_size, (0.3, 0.4))
    assert back.unit == "µm"
    assert "ome" in back.metadata


def test_plain_tiff_round_trip_uint32_uses_shaped_metadata(tmp_path):
    like = ImageData(np.zeros((4, 8, 8), np.uint16), "ZYX", (1.5, 0.2, 0.2), "µm")
    labels = _labels((4, 8, 8), 100_000)
    labels[0, 0, 0] = 100_000
    back = read_image(write_labels(tmp_path / "l.tiff", labels, like))
    assert (back.axes, back.array.dtype) == ("ZYX", np.uint32)
    np.testing.assert_allclose(back.pixel_size, (1.5, 0.2, 0.2))
    assert back.unit == "µm"


@pytest.mark.parametrize(
    ("top", "dtype"), [(1, np.uint8), (255, np.uint8), (256, np.uint16), (65_536, np.uint32)]
)
def test_labels_get_smallest_unsigned_dtype(tmp_path, top, dtype):
    labels = np.zeros((4, 5), np.int64)
    labels[1, 1] = top
    assert read_image(write_labels(tmp_path / "l.tif", labels)).array.dtype == dtype


def test_uncalibrated_labels_read_back_without_pixel_size(tmp_path):
    back = read_image(write_labels(tmp_path / "l.tif", np.ones((6, 7), bool)))
    assert back.axes == "YX"
    assert back.pixel_size is None and back.unit is None
    assert back.array.dtype == np.uint8


def test_labels_shape_must_match_like(tmp_path):
    like = ImageData(np.zeros((10, 10, 3), np.uint8), "YXC")
    with pytest.raises(ValueError, match=r"\(9, 10\).*expected \(10, 10\)"):
        write_labels(tmp_path / "l.tif", np.zeros((9, 10), np.uint8), like)


def test_negative_or_float_labels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        write_labels(tmp_path / "l.tif", -np.ones((3, 3), np.int32))
    with pytest.raises(ValueError, match="integer"):
        write_labels(tmp_path / "l.tif", np.ones((3, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_labels(tmp_path / "l.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_labels(path, np.full((4, 4), 2, np.uint8))
    np.testing.assert_array_equal(read_image(path).array, 1)
    write_labels(path, np.full((4, 4), 2, np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path).array, 2)


def _failing_writer(path, data, **kwargs):
    path.write_bytes(b"II*\x00partial")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(label_writer, "write_label_tiff", _failing_writer)
    target = tmp_path / "labels.tif"
    with pytest.raises(OSError, match="labels.tif") as info:
        write_labels(target, np.ones((4, 4), np.uint8))
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_labels(tmp_path / "l.ome.tif", np.ones((4, 4), np.uint8))
    monkeypatch.setattr(label_writer, "write_label_tiff", _failing_writer)
    with pytest.raises(OSError):
        write_labels(path, np.full((4, 4), 7, np.uint8), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["l.ome.tif"]
    np.testing.assert_array_equal(read_image(path).array, 1)


def test_unwritable_folder_raises_oserror_naming_path(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(OSError, match=r"cannot write .*l\.tif"):
        write_labels(tmp_path / "l.tif", np.ones((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []
