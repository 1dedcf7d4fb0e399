"""Flips and rotations applied identically to image and mask, from a passed-in RNG."""

import numpy as np

from napari_clip_guided_sam.data.datasets import Sample
from napari_clip_guided_sam.data.transforms import (
    RandomFlipRotate,
    flip_rotate,
    random_flip_rotate,
)


def _pair(rng):
    image = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    return image, image[..., 0] > 128


def test_image_and_mask_move_together(rng):
    image, mask = _pair(rng)
    for seed in range(12):
        out_image, out_mask = random_flip_rotate(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_mask, out_image[..., 0] > 128)
        assert out_image.flags.c_contiguous and out_mask.flags.c_contiguous


def test_fixed_transform_values():
    image = np.arange(6).reshape(2, 3)
    rotated, _ = flip_rotate(image, image, hflip=False, vflip=False, k=1)
    np.testing.assert_array_equal(rotated, np.rot90(image))
    flipped, _ = flip_rotate(image, image, hflip=True, vflip=True, k=0)
    np.testing.assert_array_equal(flipped, image[::-1, ::-1])


def test_same_seed_same_result_regardless_of_global_rng(rng):
    image, mask = _pair(rng)
    np.random.seed(1)
    first = random_flip_rotate(image, mask, np.random.default_rng(7))
    np.random.seed(2)
    second = random_flip_rotate(image, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])


def test_all_eight_orientations_occur(rng):
    image, mask = _pair(rng)
    generator = np.random.default_rng(0)
    seen = {random_flip_rotate(image, mask, generator)[0].tobytes() for _ in range(200)}
    assert len(seen) == 8


def test_sample_transform_keeps_class_and_source(rng):
    image, mask = _pair(rng)
    sample = Sample(image, mask, "cell", "a.tif")
    out = RandomFlipRotate(seed=3, rot90=False, vflip=False)(sample)
    assert (out.class_name, out.source) == ("cell", "a.tif")
    assert out.image.shape == image.shape
    disabled = RandomFlipRotate(seed=3, hflip=False, vflip=False, rot90=False)(sample)
    np.testing.assert_array_equal(disabled.image, image)
