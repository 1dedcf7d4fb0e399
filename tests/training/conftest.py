"""Shared fixtures for the training tests: bright disks on a dark field."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clip_guided_sam.data.datasets import Sample


def disk_samples(count: int, seed: int, size: tuple[int, int] = (48, 64)) -> list[Sample]:
    """`count` images with one to three bright disks each; the mask is the disks."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: size[0], : size[1]]
    samples = []
    for index in range(count):
        mask = np.zeros(size, dtype=bool)
        for _ in range(rng.integers(1, 4)):
            radius = rng.integers(5, 10)
            cy, cx = rng.integers(radius, size[0] - radius), rng.integers(radius, size[1] - radius)
            mask |= (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        noise = rng.normal(0, 8, size)
        grey = np.clip(30 + 190 * mask + noise, 0, 255).astype(np.uint8)
        image = np.repeat(grey[..., None], 3, axis=-1)
        samples.append(Sample(image, mask, "disk", f"synthetic {index}"))
    return samples


@pytest.fixture(scope="session")
def disks_train():
    return disk_samples(5, seed=1)


@pytest.fixture(scope="session")
def disks_val():
    return disk_samples(2, seed=2)
