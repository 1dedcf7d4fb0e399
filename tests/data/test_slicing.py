"""Slicing images and stacks into 2D planes along their leading axes."""

import numpy as np
import pytest

from napari_clip_guided_sam.data.axes import leading_axes
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.slicing import iter_indices, n_slices, slice_view, spatial_iter


def test_slice_view_moves_channels_last():
    array = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # TZCYX
    image = ImageData(array, "TZCYX")
    assert leading_axes(image.axes) == "TZ"
    view = slice_view(image, (1, 2))
    assert view.shape == (5, 6, 4)
    np.testing.assert_array_equal(view[..., 3], array[1, 2, 3])
    assert n_slices(image) == 6
    assert len(list(spatial_iter(image))) == 6


def test_singleton_and_missing_leading_axes():
    assert list(iter_indices(ImageData(np.zeros((1, 5, 6)), "ZYX"))) == [(0,)]
    assert list(iter_indices(ImageData(np.zeros((5, 6, 3)), "YXC"))) == [()]
    assert slice_view(ImageData(np.zeros((5, 6, 3)), "YXC")).shape == (5, 6, 3)
    with pytest.raises(ValueError, match="one entry per leading axis"):
        slice_view(ImageData(np.zeros((2, 5, 6)), "ZYX"), ())
    with pytest.raises(ValueError, match="Y and X"):
        slice_view(ImageData(np.zeros((2, 5)), "ZX"), (0,))


def test_yx_order_is_respected():
    array = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(slice_view(ImageData(array, "XY")), array.T)
