"""Reading images and stacks, eagerly and lazily, with their calibration."""

import shutil
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clip_guided_sam.data.image import ImageReadError
from napari_clip_guided_sam.data.reader import read_image, read_image_lazy
from napari_clip_guided_sam.data.slicing import slice_view


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


def test_reading_emits_no_warnings(dsb_dir, tmp_path):
    shutil.copy(sorted((dsb_dir / "labels").iterdir())[0], tmp_path / "l.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "l.tif")
    assert image.array.dtype == np.uint16 and image.axes == "YX"
