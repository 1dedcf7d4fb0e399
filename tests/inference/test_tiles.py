"""Tile geometry and blending weights (`inference.tiles`): pure numpy, no model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clip_guided_sam.inference.tiles import TilingConfig, plan_tiles, window_around


def test_automatic_tiling_starts_above_one_and_a_half_input_sizes():
    auto = TilingConfig()
    assert not plan_tiles((380, 380), 256, auto).tiled  # 1.48x: squashed as before
    assert plan_tiles((400, 200), 256, auto).tiled
    assert not plan_tiles((4000, 4000), 256, TilingConfig(enabled=False)).tiled
    assert plan_tiles((300, 300), 256, TilingConfig(enabled=True)).tiled
    assert not plan_tiles((256, 256), 256, TilingConfig(enabled=True)).tiled  # one window


def test_default_windows_are_the_model_input_and_overlap_by_two_halos():
    plan = plan_tiles((1000, 700), 256, TilingConfig())
    assert plan.halo == (32, 32) and plan.tile_shape == (192, 192)
    for spans, length in ((plan.row_spans, 1000), (plan.col_spans, 700)):
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(stop - start == 256 for start, stop in spans)
        for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
            assert stop - start >= 2 * 32  # each neighbour sees the other's edge in context
    # ceil((1000 - 256) / 192) + 1 = 5 rows, ceil((700 - 256) / 192) + 1 = 4 columns
    assert plan.n_tiles == len(plan.row_spans) * len(plan.col_spans) == 5 * 4


def test_blending_weights_are_positive_smooth_and_preserve_a_constant():
    plan = plan_tiles((700, 500), 256, TilingConfig())
    total = np.zeros(plan.shape, np.float64)
    blended = np.zeros(plan.shape, np.float64)
    for tile in plan.tiles():
        weights = plan.weights(tile)
        assert weights.shape == tile.shape and weights.min() > 0 and weights.max() == 1
        total[tile.y0 : tile.y1, tile.x0 : tile.x1] += weights
        blended[tile.y0 : tile.y1, tile.x0 : tile.x1] += weights * 0.7
    assert total.min() > 0
    np.testing.assert_allclose(blended / total, 0.7, rtol=1e-6)
    # The share of one window in the blend changes by little from pixel to pixel: no seam.
    first = next(plan.tiles())
    share = np.zeros(plan.shape)
    share[first.y0 : first.y1, first.x0 : first.x1] = plan.weights(first)
    share /= total
    assert np.abs(np.diff(share, axis=1)).max() < 0.1
    assert np.abs(np.diff(share, axis=0)).max() < 0.1


def test_tile_shape_and_halo_can_be_given_and_bad_values_are_refused():
    plan = plan_tiles((600, 600), 256, TilingConfig(True, tile_shape=(100, 150), halo=10))
    assert plan.halo == (10, 10)
    assert {stop - start for start, stop in plan.row_spans} == {120}
    assert {stop - start for start, stop in plan.col_spans} == {170}
    with pytest.raises(ValueError, match="halo must be 0 or more"):
        TilingConfig(halo=-1)
    with pytest.raises(ValueError, match="tile shape must be positive"):
        TilingConfig(tile_shape=(0, 10))
    with pytest.raises(ValueError, match="windows need at least 16"):
        TilingConfig(tile_shape=4, halo=2)
    with pytest.raises(ValueError, match="one or two numbers"):
        TilingConfig(tile_shape=(1, 2, 3))


def test_a_window_around_a_box_is_recentred_inside_the_image():
    window = window_around((1000, 800), np.array([700, 10, 790, 60]), (256, 256))
    assert (window.y0, window.y1) == (0, 256)  # moved down to stay inside
    assert (window.x0, window.x1) == (544, 800)  # moved left to stay inside
    assert window.contains_box(np.array([700, 10, 790, 60]))
    middle = window_around((1000, 800), np.array([300, 400, 340, 440]), (256, 256))
    assert (middle.x0 + middle.x1) / 2 == 320 and (middle.y0 + middle.y1) / 2 == 420
