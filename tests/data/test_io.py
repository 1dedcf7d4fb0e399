"""Reading images, writing labels atomically, and pairing folders by stem."""

import errno
import shutil
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clip_guided_sam import _atomic
from napari_clip_guided_sam.data import io
from napari_clip_guided_sam.data.io import (
    ImageData,
    ImageReadError,
    image_stem,
    list_images,
    match_by_stem,
    read_image,
    read_image_lazy,
    write_labels,
)
from napari_clip_guided_sam.data.normalize import slice_view


def _labels(shape, top, seed=0):
    return np.random.default_rng(seed).integers(0, top + 1, size=shape)


# --------------------------------------------------------------------------- write/read labels


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
    monkeypatch.setattr(io, "write_label_tiff", _failing_writer)
    target = tmp_path / "labels.tif"
    with pytest.raises(OSError, match="labels.tif") as info:
        write_labels(target, np.ones((4, 4), np.uint8))
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_labels(tmp_path / "l.ome.tif", np.ones((4, 4), np.uint8))
    monkeypatch.setattr(io, "write_label_tiff", _failing_writer)
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


# --------------------------------------------------------------------------- reading


def test_dsb_png_keeps_rgba(dsb_dir):
    path = sorted((dsb_dir / "images").iterdir())[0]
    image = read_image(path)
    assert (image.axes, image.shape, image.array.dtype) == ("YXC", (256, 256, 4), np.uint8)
    assert image.channel_axis == 2 and image.path == path


def test_sixteen_bit_png_and_float_tiff_keep_dtype(tmp_path):
    grey16 = (np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert (image.axes, image.array.dtype) == ("YX", np.uint16)
    np.testing.assert_array_equal(image.array, grey16)
    floats = np.linspace(-1, 1, 60, dtype=np.float32).reshape(6, 10)
    tifffile.imwrite(tmp_path / "f.tif", floats)
    assert read_image(tmp_path / "f.tif").array.dtype == np.float32


def test_imagej_calibration_is_read(tmp_path):
    data = np.zeros((5, 2, 8, 9), np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.1, 1 / 0.2),
        metadata={"axes": "ZCYX", "spacing": 0.7, "unit": "micron"},
    )
    image = read_image(tmp_path / "ij.tif")
    assert image.axes == "ZCYX"
    np.testing.assert_allclose(image.pixel_size, (0.7, 0.2, 0.1))
    assert image.unit == "µm"
    assert image.pixel_size_of("X") == pytest.approx(0.1)
    assert image.metadata["imagej"]["spacing"] == 0.7


def test_resolution_tags_in_centimetres_are_a_fallback(tmp_path):
    tifffile.imwrite(
        tmp_path / "r.tif",
        np.zeros((8, 8), np.uint8),
        resolution=(1e4 / 0.65, 1e4 / 0.65),
        resolutionunit="CENTIMETER",
    )
    image = read_image(tmp_path / "r.tif")
    np.testing.assert_allclose(image.pixel_size, (0.65, 0.65))
    assert image.unit == "µm"


def test_rgb_tiff_samples_axis_becomes_c(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    assert read_image(tmp_path / "rgb.tif").axes == "YXC"


@pytest.mark.parametrize("name", ["garbage.tif", "garbage.png", "garbage.jpg"])
def test_corrupt_file_raises_image_read_error_naming_it(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError, match=name):
        read_image(tmp_path / name)


def test_truncated_png_and_tiff_raise_image_read_error(tmp_path, dsb_dir):
    png = sorted((dsb_dir / "images").iterdir())[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    tifffile.imwrite(tmp_path / "full.tif", np.ones((64, 64), np.uint16))
    tif = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(tif[: len(tif) // 3])
    with pytest.raises(ImageReadError, match="cut.tif"):
        read_image(tmp_path / "cut.tif")


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.tif")


# --------------------------------------------------------------------------- lazy


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_lazy_stack_reads_slices_on_demand(tmp_path, compression):
    stack = np.arange(6 * 10 * 12, dtype=np.uint16).reshape(6, 10, 12)
    tifffile.imwrite(
        tmp_path / "s.tif",
        stack,
        photometric="minisblack",
        compression=compression,
        metadata={"axes": "ZYX"},
    )
    image = read_image_lazy(tmp_path / "s.tif")
    assert type(image.array).__module__.startswith("dask")
    assert (image.axes, image.shape) == ("ZYX", stack.shape)
    np.testing.assert_array_equal(slice_view(image, (4,)), stack[4])
    np.testing.assert_array_equal(np.asarray(image.array[1:5:2, 2:4]), stack[1:5:2, 2:4])


def test_lazy_hyperstack_with_rgb_pages(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 9, 3), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "h.tif", stack, photometric="rgb", compression="zlib", metadata={"axes": "TZYXS"}
    )
    image = read_image_lazy(tmp_path / "h.tif")
    assert image.axes == "TZYXC"
    np.testing.assert_array_equal(slice_view(image, (1, 2)), stack[1, 2])
    np.testing.assert_array_equal(np.asarray(image.array), stack)


def test_lazy_single_compressed_page(tmp_path):
    image2d = np.arange(20, dtype=np.uint8).reshape(4, 5)
    tifffile.imwrite(tmp_path / "p.tif", image2d, compression="zlib")
    image = read_image_lazy(tmp_path / "p.tif")
    assert image.axes == "YX"
    np.testing.assert_array_equal(slice_view(image), image2d)


def test_lazy_png_is_wrapped(dsb_dir):
    path = sorted((dsb_dir / "images").iterdir())[0]
    image = read_image_lazy(path)
    np.testing.assert_array_equal(np.asarray(image.array), read_image(path).array)


# --------------------------------------------------------------------------- folders


def test_list_images_sorted_supported_not_hidden(tmp_path):
    for name in ["b.png", "a.TIF", ".hidden.tif", "c.ome.tiff", "notes.txt", "d.jpeg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.tif").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.TIF", "b.png", "c.ome.tiff", "d.jpeg"]


def test_image_stem_ignores_ome():
    assert image_stem("x/a.ome.tif") == "a"
    assert image_stem("a.OME.TIFF") == "a"
    assert image_stem("a.b.png") == "a.b"


def test_match_by_stem_pairs_and_reports_unmatched(tmp_path):
    images, labels = tmp_path / "im", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    for name in ["a.png", "b.ome.tif", "c.png"]:
        (images / name).write_bytes(b"x")
    for name in ["a.tif", "b.tif", "z.tif"]:
        (labels / name).write_bytes(b"x")
    matches = match_by_stem(images, labels)
    assert [(i.name, lab.name) for i, lab in matches] == [
        ("a.png", "a.tif"),
        ("b.ome.tif", "b.tif"),
    ]
    assert [p.name for p in matches.unmatched_images] == ["c.png"]
    assert [p.name for p in matches.unmatched_labels] == ["z.tif"]


def test_match_by_stem_with_label_suffix(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"x")
    (tmp_path / "lab" / "a_labels.tif").write_bytes(b"x")
    assert len(match_by_stem(tmp_path / "im", tmp_path / "lab", label_suffix="_labels")) == 1


def test_match_by_stem_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"x")
    (tmp_path / "lab" / "b.tif").write_bytes(b"x")
    with pytest.raises(ValueError, match="no images in"):
        match_by_stem(tmp_path / "empty", tmp_path / "lab")
    with pytest.raises(ValueError, match="same name"):
        match_by_stem(tmp_path / "im", tmp_path / "lab")
    with pytest.raises(NotADirectoryError):
        match_by_stem(tmp_path / "nope", tmp_path / "lab")


def test_dsb_resources_pair_up(dsb_dir):
    matches = match_by_stem(dsb_dir / "images", dsb_dir / "labels")
    assert len(matches) == 3 and matches.unmatched == []


def test_reading_emits_no_warnings(dsb_dir, tmp_path):
    shutil.copy(sorted((dsb_dir / "labels").iterdir())[0], tmp_path / "l.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "l.tif")
    assert image.array.dtype == np.uint16 and image.axes == "YX"
