"""Large training images are cut to one model-size window at full resolution
(`training.crops`); small ones are prepared whole, as before."""

from __future__ import annotations

import re

import numpy as np

from napari_clip_guided_sam.data.datasets import Sample
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.training.crops import training_window
from napari_clip_guided_sam.training.inputs import PreparedCache, prepare_sample

TINY = get_preset("tiny")  # 256 px input


def gradient_sample(shape, source="a.tif"):
    rows, cols = np.indices(shape)
    image = np.repeat(((rows + 3 * cols) % 256).astype(np.uint8)[..., None], 3, axis=-1)
    mask = (rows // 50 + cols // 50) % 2 == 0
    return Sample(image, mask, "nucleus", source, valid=np.ones(shape, bool))


def test_a_large_image_trains_on_one_window_at_full_resolution():
    sample = gradient_sample((900, 700))
    window = training_window(sample, 256)
    assert window.image.shape == (256, 256, 3) and window.mask.shape == window.valid.shape
    # The window is a piece of the image, pixel for pixel (no resizing), and so is its mask.
    match = re.search(r"window y(\d+):(\d+) x(\d+):(\d+)$", window.source)
    y0, y1, x0, x1 = (int(v) for v in match.groups())
    assert (y1 - y0, x1 - x0) == (256, 256)
    np.testing.assert_array_equal(sample.image[y0:y1, x0:x1], window.image)
    np.testing.assert_array_equal(sample.mask[y0:y1, x0:x1], window.mask)
    # Deterministic per sample; other sources may draw other windows.
    assert training_window(sample, 256).source == window.source
    sources = {
        training_window(gradient_sample((900, 700), f"{k}.tif"), 256).source[-20:] for k in range(8)
    }
    assert len(sources) > 1
    prepared = prepare_sample(sample, TINY)
    assert prepared.frame.original_size == (256, 256)
    truth, valid = PreparedCache([sample], TINY, 0).original_truth(0)
    np.testing.assert_array_equal(truth, window.mask)


def test_small_images_and_evaluation_keep_the_whole_image():
    small = gradient_sample((300, 300))  # below 1.5 x 256
    assert training_window(small, 256) is small
    assert prepare_sample(small, TINY).frame.original_size == (300, 300)
    large = gradient_sample((900, 700))
    assert prepare_sample(large, TINY, window=False).frame.original_size == (900, 700)
    whole, _ = PreparedCache([large], TINY, 0, windows=False).original_truth(0)
    assert whole.shape == (900, 700)
