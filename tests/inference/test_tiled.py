"""Segmenting in tiles (`inference.tiled`, `Predictor.segment`, the batch path) with the tiny
model fine-tuned on disks: windows agree with the whole image, a window without the object
gets no mask, clicks reach their windows, and a large slice is read window by window."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_stack_to_array
from napari_clip_guided_sam.inference.objects import ObjectPrompt
from napari_clip_guided_sam.inference.predictor import WINDOW_PRESENCE, Predictor
from napari_clip_guided_sam.inference.tiled import _points_in
from napari_clip_guided_sam.inference.tiled_objects import object_window
from napari_clip_guided_sam.inference.tiles import TilingConfig, plan_tiles

from .conftest import disk_image

OFF = TilingConfig(enabled=False)


def disks(shape, centres, radius=28):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
    return mask


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture
def predictor(disk_model):
    return Predictor(disk_model, device="cpu", precision="fp32")


def test_small_tiles_of_an_image_that_fits_agree_with_the_whole_image(predictor):
    mask = disks((256, 256), [(70, 80), (150, 170), (200, 60)])
    image = disk_image(mask, seed=0)
    whole = predictor.segment(image, ["disk"], tiling=OFF)
    tiled = predictor.segment(image, ["disk"], tiling=TilingConfig(True, tile_shape=128, halo=32))
    assert predictor.stats.encoder_calls == 1 + 4  # the image, then 2 x 2 windows
    assert iou(tiled.labels > 0, whole.labels > 0) > 0.85  # windows are upscaled 4/3
    assert iou(tiled.labels > 0, mask) > 0.85
    assert tiled.probabilities.shape == tiled.similarity_maps.shape == (1, 256, 256)


def test_a_window_without_the_object_gets_no_mask(predictor):
    # 420 px > 1.5 x 256: four windows, a disk in each but the bottom-right one [164:, 164:].
    mask = disks((420, 420), [(60, 70), (100, 330), (330, 80)])
    image = disk_image(mask, seed=0)
    plan = plan_tiles(image.shape[:2], 256, TilingConfig())
    assert plan.row_spans == plan.col_spans == ((0, 256), (164, 420))
    squashed = predictor.segment(image, ["disk"], tiling=OFF)
    predictor.stats.reset()
    tiled = predictor.segment(image, ["disk"])
    empty = (slice(256, None), slice(256, None))  # only the empty window reaches here
    assert not (squashed.labels[empty] > 0).any() and not (tiled.labels[empty] > 0).any()
    # Normalised over the whole image, the empty window's map stays low, so it is not decoded
    # at all; normalised on its own it would reach 1 and prompt SAM there.
    assert tiled.similarity_maps[0][empty].max() < WINDOW_PRESENCE
    assert predictor.stats.decoder_calls == 3
    alone = predictor.segment(image[164:, 164:], ["disk"], tiling=OFF)
    assert alone.similarity_maps.max() > 0.99
    assert iou(tiled.labels > 0, mask) > max(0.8, iou(squashed.labels > 0, mask))


def test_an_image_without_the_object_gets_no_mask_tiled_or_not(predictor):
    image = disk_image(np.zeros((420, 420), bool), seed=3)
    assert not predictor.segment(image, ["disk"], tiling=OFF).labels.any()
    assert not predictor.segment(image, ["disk"]).labels.any()


def test_clicks_reach_every_window_holding_them_in_its_own_pixels():
    plan = plan_tiles((420, 420), 256, TilingConfig())
    clicks = np.array([[200.0, 210.0], [10.0, 400.0]])
    labels = np.array([1, 0])
    seen = {}
    for tile in plan.tiles():
        points, point_labels = _points_in(tile, clicks, labels)
        if points is not None:
            seen[(tile.row, tile.col)] = (points.tolist(), point_labels.tolist())
    # (200, 210) lies in the overlap of all four windows; (10, 400) in the bottom-left only.
    assert seen[(0, 0)] == ([[200.0, 210.0]], [1])
    assert seen[(1, 1)] == ([[36.0, 46.0]], [1])
    assert seen[(1, 0)] == ([[200.0, 46.0], [10.0, 236.0]], [1, 0])


def test_an_object_across_a_window_edge_is_one_object_without_a_seam(predictor):
    # A disk centred in the overlap of the four windows, clicked at its centre.
    mask = disks((420, 420), [(210, 210)], radius=34)
    image = disk_image(mask, seed=1)
    clicked = predictor.segment(image, ["disk"], np.array([[210.0, 210.0]]), np.array([1]))
    found = clicked.labels > 0
    assert iou(found, mask) > 0.8
    assert ndimage.label(found)[1] == 1
    with pytest.raises(ValueError, match="outside the image"):  # before any window runs
        predictor.segment(image, ["disk"], np.array([[430.0, 10.0]]), np.array([1]))


class RecordingArray:
    """A 2D (Y, X, C) array-like that records every region read from it."""

    def __init__(self, data):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        part = self.data[key]
        self.reads.append(part.shape[:2])
        return part


def test_a_large_slice_is_read_and_segmented_window_by_window(predictor):
    mask = disks((420, 420), [(60, 70), (150, 90), (100, 180), (300, 330)])
    rgb = disk_image(mask, seed=0)
    recording = RecordingArray(rgb)
    image = ImageData(recording, "YXC")
    labels = run(segment_stack_to_array(predictor, image, SegmentOptions(("disk",))))
    assert recording.reads and all(h <= 256 and w <= 256 for h, w in recording.reads)
    # Two reads of each of the 4 windows: the similarity range, then the segmentation.
    assert len(recording.reads) == 8
    np.testing.assert_array_equal(labels, predictor.segment(rgb, ["disk"]).labels)
    untiled = SegmentOptions(("disk",), tiling=OFF)
    squashed = run(segment_stack_to_array(predictor, image, untiled))
    assert recording.reads[-1] == (420, 420)  # tiling off: the whole slice at once
    assert iou(labels > 0, mask) > iou(squashed > 0, mask)


def run(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def test_an_object_is_segmented_in_a_window_around_its_own_prompts(predictor):
    # Disks at (200, 250), across the edge x = 256 of the plan's first window, and (60, 60).
    mask = disks((420, 420), [(200, 250)], radius=30)
    other = disks((420, 420), [(60, 60)], radius=30)
    image = disk_image(mask | other, seed=2)
    boxed = ObjectPrompt(box=np.array([215.0, 165.0, 285.0, 235.0]))
    clicked = ObjectPrompt(points=np.array([[250.0, 200.0]]), point_labels=np.array([1]))
    window = object_window(boxed, (420, 420), 256, (32, 32))
    assert window.shape == (256, 256) and window.contains_box(boxed.box)
    prediction = predictor.segment_objects(image, "disk", [boxed, clicked])
    assert prediction.masks.shape == (2, 420, 420)
    for found in prediction.masks:
        assert iou(found, mask) > 0.8 and not (found & other).any()
    # One window per object, never the whole image; both prompts centre the same window here.
    assert (predictor.stats.encoder_calls, predictor.stats.embedding_hits) == (1, 1)
