"""Which examples an epoch trains on, in which order: a shuffle of all of them, or a draw
balanced over classes and foreground sizes (`TrainingConfig.balance`). Both are functions
of (seed, epoch) only, so a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["balanced_order", "epoch_order", "sampling_weights"]


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffled sample order of an epoch."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def sampling_weights(data: Sequence) -> np.ndarray:
    """Balanced sampling: every class gets the same share of the draws, and within a class
    each foreground-size group (empty, < 2 %, 2-10 %, 10-30 %, >= 30 % of the pixels that
    count) gets a share growing with the square root of its size, so the rare kinds of
    example (few or small objects) come up more often without crowding out the rest.

    `data` holds prepared samples (`training.inputs.PreparedSample`: mask, valid, class)."""
    groups: list[tuple[str, int]] = []
    for index in range(len(data)):
        sample = data[index]
        mask = sample.mask if sample.valid is None else sample.mask & sample.valid
        counted = sample.mask.numel() if sample.valid is None else int(sample.valid.sum())
        fraction = float(mask.sum()) / max(counted, 1)
        groups.append((sample.class_name, _size_group(fraction)))
    group_sizes: dict[tuple[str, int], int] = {}
    for group in groups:
        group_sizes[group] = group_sizes.get(group, 0) + 1
    class_mass: dict[str, float] = {}
    for (name, _), size in group_sizes.items():
        class_mass[name] = class_mass.get(name, 0.0) + math.sqrt(size)
    weights = np.array(
        [
            math.sqrt(group_sizes[g]) / group_sizes[g] / class_mass[g[0]] / len(class_mass)
            for g in groups
        ]
    )
    return weights / weights.sum()


_SIZE_EDGES = (0.0, 0.02, 0.10, 0.30)


def _size_group(fraction: float) -> int:
    if fraction <= 0.0:
        return 0
    return int(np.searchsorted(_SIZE_EDGES, fraction, side="right"))


def balanced_order(seed: int, epoch: int, weights: np.ndarray) -> np.ndarray:
    """An epoch's examples drawn with replacement by `weights` (as many as the data holds)."""
    return np.random.default_rng([seed, epoch, 1]).choice(len(weights), len(weights), p=weights)
