"""Instance splitting of class masks: one id per object (nucleus).

A semantic mask of touching nuclei is one blob; ``split_instances`` cuts it into objects
either by connectivity alone or by a watershed on the distance transform, seeded by the
maxima of that distance (each roughly convex object has one maximum near its centre).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

__all__ = ["INSTANCE_METHODS", "InstanceConfig", "labels_to_instances", "split_instances"]

InstanceMethod = Literal["connected", "watershed"]
INSTANCE_METHODS: tuple[str, ...] = ("connected", "watershed")


@dataclass(frozen=True)
class InstanceConfig:
    """How a binary mask becomes instances.

    Attributes:
        method: ``"connected"``: 8-connected components; ``"watershed"``: components cut
            along the necks between distance-transform maxima (touching nuclei).
        h: watershed only; a distance maximum must rise this many pixels above the saddle
            to its neighbour to seed its own object (larger = fewer splits).
        sigma: watershed only; Gaussian smoothing (pixels) of the distance map before its
            maxima are found, against ragged mask borders.
        min_size: objects smaller than this many pixels are merged into the touching
            object they share most border with, or dropped when isolated (0 keeps all).
    """

    method: InstanceMethod = "watershed"
    h: float = 1.0
    sigma: float = 1.0
    min_size: int = 0

    def __post_init__(self) -> None:
        if self.method not in INSTANCE_METHODS:
            methods = ", ".join(INSTANCE_METHODS)
            raise ValueError(f"instance method must be one of {methods}, got {self.method!r}")
        if self.h < 0 or self.sigma < 0 or self.min_size < 0:
            values = (self.h, self.sigma, self.min_size)
            raise ValueError(f"h, sigma and min_size must be >= 0, got {values}")


_EIGHT = np.ones((3, 3), dtype=bool)


def split_instances(mask: np.ndarray, config: InstanceConfig | None = None) -> np.ndarray:
    """Split a binary mask into instances.

    Args:
        mask: ``bool [H, W]`` (any nonzero value is foreground).
        config: method and its parameters; default: watershed with ``h=1``, ``sigma=1``.

    Returns:
        ``int32 [H, W]``: 0 background, instances numbered 1..n in raster order of their
        first pixel. Every foreground pixel gets an id (except objects dropped by
        ``min_size``).
    """
    config = config or InstanceConfig()
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"split_instances takes a 2D mask [H, W], got shape {mask.shape}")
    components, count = ndi.label(mask, structure=_EIGHT)
    if count == 0:
        return components.astype(np.int32)
    if config.method == "watershed":
        components = _watershed_split(mask, components, config)
    if config.min_size > 0:
        components = _merge_small(components, config.min_size)
    return _relabel_sequential(components)


def _watershed_split(
    mask: np.ndarray, components: np.ndarray, config: InstanceConfig
) -> np.ndarray:
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    distance = ndi.distance_transform_edt(mask)
    if config.sigma > 0:
        distance = ndi.gaussian_filter(distance, config.sigma) * mask
    peaks = h_maxima(distance, config.h) if config.h > 0 else _plateaus(distance)
    markers, n_markers = ndi.label(peaks & mask, structure=_EIGHT)
    # Components too thin to hold a maximum of height h keep their own id.
    seeded = np.zeros(int(components.max()) + 1, dtype=bool)
    seeded[np.unique(components[markers > 0])] = True
    unseeded = ~seeded[components] & mask
    markers[unseeded] = components[unseeded] + n_markers
    return watershed(-distance, markers, mask=mask, connectivity=2)


def _plateaus(distance: np.ndarray) -> np.ndarray:
    """Local maxima (plateaus included) of a map: every peak seeds an object."""
    return (distance == ndi.maximum_filter(distance, footprint=_EIGHT)) & (distance > 0)


def _merge_small(instances: np.ndarray, min_size: int) -> np.ndarray:
    """Merge objects below ``min_size`` pixels into their largest-contact neighbour."""
    instances = instances.copy()
    sizes = np.bincount(instances.ravel())
    for small in np.flatnonzero((sizes < min_size) & (sizes > 0)):
        if small == 0:
            continue
        region = instances == small
        ring = ndi.binary_dilation(region, structure=_EIGHT) & ~region
        neighbours = instances[ring]
        neighbours = neighbours[neighbours > 0]
        instances[region] = np.bincount(neighbours).argmax() if neighbours.size else 0
    return instances


def _relabel_sequential(instances: np.ndarray) -> np.ndarray:
    """Ids 1..n in raster order of each object's first pixel."""
    flat = instances.ravel()
    present, first = np.unique(flat, return_index=True)
    order = present[np.argsort(first)]
    order = order[order != 0]
    lookup = np.zeros(int(present.max()) + 1, dtype=np.int32)
    lookup[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lookup[instances]


def labels_to_instances(
    labels: np.ndarray,
    n_classes: int | None = None,
    config: InstanceConfig | None = None,
    *,
    values: Sequence[int] | None = None,
) -> np.ndarray:
    """Instances of every class of a class-label image, numbered consecutively.

    Args:
        labels: ``int [H, W]``, 0 background, ``k + 1`` for class ``k``.
        n_classes: number of classes (default: the largest label).
        config: see :func:`split_instances`.
        values: the label value of each class instead (e.g. a checkpoint's label table),
            in the order their objects are numbered; other values are unlabelled.

    Returns:
        ``int32 [H, W]``: the first class's instances get ids 1..n1, the second's
        n1+1..n1+n2, ...
    """
    labels = np.asarray(labels)
    if values is None:
        n_classes = int(labels.max()) if n_classes is None else int(n_classes)
        values = range(1, n_classes + 1)
    out = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for value in values:
        instances = split_instances(labels == value, config)
        found = instances > 0
        out[found] = instances[found] + offset
        offset += int(instances.max())
    return out
