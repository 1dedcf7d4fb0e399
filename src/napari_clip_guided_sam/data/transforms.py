"""Training augmentation: random flips and 90-degree rotations, same for image and mask.

Randomness comes only from a ``numpy.random.Generator`` passed in or owned by the transform
object, never from the global RNG, so runs repeat for a given seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # runtime import would pull torch in through datasets
    from .datasets import Sample

__all__ = [
    "FlipRotation",
    "RandomFlipRotate",
    "draw_flip_rotation",
    "flip_rotate",
    "random_flip_rotate",
]


@dataclass(frozen=True)
class FlipRotation:
    """One augmentation: flips, then ``turns`` counter-clockwise quarter turns."""

    hflip: bool
    vflip: bool
    turns: int


def draw_flip_rotation(
    rng: np.random.Generator, *, hflip: bool = True, vflip: bool = True, rot90: bool = True
) -> FlipRotation:
    """Draw the enabled operations from ``rng``, in this order: horizontal flip and vertical
    flip with probability 1/2 each, then 0-3 quarter turns. Training on prepared tensors
    (``training.inputs.Augmentation``) draws through here too, so both augment alike."""
    do_h = bool(rng.random() < 0.5) if hflip else False
    do_v = bool(rng.random() < 0.5) if vflip else False
    turns = int(rng.integers(4)) if rot90 else 0
    return FlipRotation(do_h, do_v, turns)


def flip_rotate(
    image: np.ndarray, mask: np.ndarray, *, hflip: bool, vflip: bool, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a fixed flip/rotation to ``image [H, W, ...]`` and ``mask [H, W]``.

    Order: horizontal flip, vertical flip, then ``k`` counter-clockwise 90-degree turns.
    Returns contiguous copies (torch cannot wrap negative strides).
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in H, W")
    if hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if vflip:
        image, mask = image[::-1], mask[::-1]
    if k % 4:
        image, mask = np.rot90(image, k, axes=(0, 1)), np.rot90(mask, k, axes=(0, 1))
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def random_flip_rotate(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    hflip: bool = True,
    vflip: bool = True,
    rot90: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flip and rotate ``image [H, W, ...]`` and ``mask [H, W]`` identically.

    Each enabled operation is drawn from ``rng`` (flips with probability 1/2, rotation by
    0-3 quarter turns). Rotations swap H and W of non-square inputs.
    """
    drawn = draw_flip_rotation(rng, hflip=hflip, vflip=vflip, rot90=rot90)
    return flip_rotate(image, mask, hflip=drawn.hflip, vflip=drawn.vflip, k=drawn.turns)


@dataclass
class RandomFlipRotate:
    """Callable ``Sample -> Sample`` augmentation owning its own seeded Generator.

    Attributes:
        seed: seed of the generator (or a ready Generator).
        hflip, vflip, rot90: which operations to draw.

    Note: DataLoader worker processes each get a copy of the generator; seed them apart
    (e.g. in ``worker_init_fn``) if workers are used.
    """

    seed: int | np.random.Generator = 0
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True

    def __post_init__(self) -> None:
        self.rng = (
            self.seed
            if isinstance(self.seed, np.random.Generator)
            else np.random.default_rng(self.seed)
        )

    def __call__(self, sample: Sample) -> Sample:
        drawn = draw_flip_rotation(self.rng, hflip=self.hflip, vflip=self.vflip, rot90=self.rot90)
        image, mask = flip_rotate(
            sample.image, sample.mask, hflip=drawn.hflip, vflip=drawn.vflip, k=drawn.turns
        )
        valid = sample.valid
        if valid is not None:  # the same draw: ignored pixels move with their image
            _, valid = flip_rotate(
                sample.image, valid, hflip=drawn.hflip, vflip=drawn.vflip, k=drawn.turns
            )
        return dataclasses.replace(sample, image=image, mask=mask, valid=valid)
