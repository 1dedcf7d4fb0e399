"""Turning any slice into the model's uint8 RGB input."""

import warnings

import numpy as np
import pytest

from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.normalize import (
    NormalizeConfig,
    normalize_image_slice,
    stack_percentiles,
    to_model_rgb,
)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_sixteen_bit_grey_fills_0_to_255_as_grey_rgb(rng):
    grey = rng.integers(1000, 5000, size=(40, 50)).astype(np.uint16)
    rgb = to_model_rgb(grey)
    assert (rgb.shape, rgb.dtype) == ((40, 50, 3), np.uint8)
    assert rgb.min() == 0 and rgb.max() == 255
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    # monotone: brighter input never maps darker
    order = np.argsort(grey.ravel())
    assert np.all(np.diff(rgb[..., 0].ravel()[order].astype(int)) >= 0)


def test_percentiles_clip_outliers(rng):
    grey = rng.normal(100, 10, size=(100, 100)).astype(np.float32)
    grey[0, 0] = 1e6  # one hot pixel must not squash the rest
    rgb = to_model_rgb(grey, percentiles=(1.0, 99.0))
    assert rgb[0, 0, 0] == 255
    assert np.percentile(rgb[..., 0], 50) == pytest.approx(127, abs=15)


def test_float_with_nan_and_inf_is_finite_uint8(rng):
    data = rng.random((20, 30)).astype(np.float32)
    data[0, 0], data[0, 1], data[0, 2] = np.nan, np.inf, -np.inf
    rgb = to_model_rgb(data)
    assert rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, 1, 0] == 255 and rgb[0, 2, 0] == 0
    assert rgb[1:].max() == 255 and rgb[1:].min() == 0


@pytest.mark.parametrize("value", [0, 7, 65535])
def test_constant_image_gives_zeros(value):
    rgb = to_model_rgb(np.full((8, 9), value, np.uint16))
    assert rgb.shape == (8, 9, 3) and not rgb.any()


def test_all_nan_gives_zeros():
    assert not to_model_rgb(np.full((4, 4), np.nan)).any()


def test_uint8_rgba_passes_through_unchanged(rng):
    rgba = rng.integers(10, 60, size=(16, 17, 4), dtype=np.uint8)
    rgb = to_model_rgb(rgba)
    np.testing.assert_array_equal(rgb, rgba[..., :3])
    assert rgb.flags.c_contiguous


def test_uint8_rgb_channels_first_passes_through(rng):
    rgb_first = rng.integers(0, 255, size=(3, 8, 9), dtype=np.uint8)
    np.testing.assert_array_equal(
        to_model_rgb(rgb_first, channel_axis=0), np.moveaxis(rgb_first, 0, -1)
    )


def test_channel_choice_on_rgb_picks_and_replicates(rng):
    rgb = rng.integers(0, 255, size=(8, 9, 3), dtype=np.uint8)
    green = to_model_rgb(rgb, channels=[1])
    np.testing.assert_array_equal(green[..., 0], green[..., 2])
    np.testing.assert_array_equal(green[..., 0], to_model_rgb(rgb[..., 1])[..., 0])


def test_multichannel_needs_channels(rng):
    stack = rng.integers(0, 4000, size=(5, 12, 13)).astype(np.uint16)  # CYX
    with pytest.raises(ValueError, match="5 channels.*channels="):
        to_model_rgb(stack, channel_axis=0)
    rgb = to_model_rgb(stack, channel_axis=0, channels=[4, 2])
    np.testing.assert_array_equal(rgb[..., 0], to_model_rgb(stack[4])[..., 0])
    np.testing.assert_array_equal(rgb[..., 1], to_model_rgb(stack[2])[..., 0])
    assert not rgb[..., 2].any()


def test_two_channels_fill_red_green(rng):
    data = rng.random((6, 7, 2)).astype(np.float32)
    rgb = to_model_rgb(data)
    assert rgb[..., 0].max() == 255 and rgb[..., 1].max() == 255 and not rgb[..., 2].any()


def test_bad_channel_index_and_bad_shape():
    with pytest.raises(ValueError, match="out of range"):
        to_model_rgb(np.zeros((4, 4, 3), np.uint16), channels=[3])
    with pytest.raises(ValueError, match="1 to 3"):
        to_model_rgb(np.zeros((4, 4, 5), np.uint16), channels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="2D slice"):
        to_model_rgb(np.zeros((2, 3, 4, 4)))


def test_stack_stats_keep_relative_brightness_between_slices():
    stack = np.stack([np.linspace(0, 100, 400), np.linspace(0, 1000, 400)]).reshape(2, 20, 20)
    stats = stack_percentiles(stack, None, (0.0, 100.0))
    np.testing.assert_allclose([stats.low[0], stats.high[0]], [0.0, 1000.0])
    dim = to_model_rgb(stack[0], stats=stats)
    bright = to_model_rgb(stack[1], stats=stats)
    assert dim.max() == pytest.approx(26, abs=1) and bright.max() == 255
    assert to_model_rgb(stack[0], percentiles=(0.0, 100.0)).max() == 255  # per slice


def test_stack_stats_per_channel_and_subsampled(rng):
    stack = rng.random((10, 64, 64, 2)) * np.array([1.0, 100.0])  # ZYXC
    stats = stack_percentiles(stack, -1, (1.0, 99.0), sample=5_000, max_slices=4)
    assert stats.n_channels == 2
    assert stats.low[1] == pytest.approx(1.0, abs=1.0) and stats.high[1] == pytest.approx(99, abs=1)
    assert stats.high[0] == pytest.approx(0.99, abs=0.02)


def test_stack_stats_must_match_channels():
    stats = stack_percentiles(np.zeros((2, 4, 4)), None)
    with pytest.raises(ValueError, match="stats cover 1 channels"):
        to_model_rgb(np.zeros((4, 4, 2), np.float32), stats=stats)


def test_normalize_config_validates():
    with pytest.raises(ValueError, match="mode"):
        NormalizeConfig(mode="volume")
    with pytest.raises(ValueError, match="percentiles"):
        NormalizeConfig(percentiles=(50.0, 10.0))


def test_normalize_image_slice_stack_mode():
    stack = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 20.0)])
    stack[:, 0, 0] = 0.0
    image = ImageData(stack, "ZYX")
    per_slice = normalize_image_slice(image, (0,), NormalizeConfig(percentiles=(0.0, 100.0)))
    per_stack = normalize_image_slice(
        image, (0,), NormalizeConfig(mode="stack", percentiles=(0.0, 100.0))
    )
    assert per_slice[1, 1, 0] == 255 and per_stack[1, 1, 0] == 128
