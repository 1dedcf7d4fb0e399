"""Slicing images and stacks into the 2D ``[Y, X]`` (or ``[Y, X, C]``) planes the model sees.

A slice is addressed by its *leading index*: one int per leading axis (see
:func:`~.axes.leading_axes`), in array order; a 2D image has the single index ``()``.
Slices are read one at a time, so a lazy stack is never loaded whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .axes import CHANNEL_AXES, PLANE_AXES, leading_axes
from .image import ImageData

__all__ = [
    "iter_indices",
    "leading_shape",
    "n_slices",
    "slice_view",
    "spatial_iter",
    "take_slice",
]


def leading_shape(image: ImageData) -> tuple[int, ...]:
    """Sizes of the leading (Z, T, ...) axes of ``image``, in array order."""
    lead = leading_axes(image.axes)
    return tuple(image.shape[image.axes.index(a)] for a in lead)


def n_slices(image: ImageData) -> int:
    """Number of 2D slices in ``image`` (1 for a 2D image or a ``[1, H, W]`` stack)."""
    return math.prod(leading_shape(image))


def iter_indices(image: ImageData) -> Iterator[tuple[int, ...]]:
    """All leading-axes indices of ``image`` in row-major order (``()`` for a 2D image)."""
    return itertools.product(*(range(n) for n in leading_shape(image)))


def take_slice(
    array: Any, axes: str, index: tuple[int, ...], region: tuple[slice, slice] | None = None
) -> np.ndarray:
    """The ``[Y, X]`` or ``[Y, X, C]`` slice of ``array`` (axes ``axes``) at a leading index.

    Args:
        array: numpy or dask array whose dimensions are named by ``axes``.
        axes: e.g. ``"TZCYX"``; the channel axis (``C``), if present, ends up last.
        index: one int per leading axis (see :func:`leading_axes`), in array order.
        region: (rows, columns) slices of the plane to read, e.g. one window of a tiled
            image; only that part of a lazy array is read. None: the whole plane.

    Returns:
        A numpy array (lazy arrays are read here), ``[Y, X]`` or ``[Y, X, C]``.
    """
    axes = axes.upper()
    lead = leading_axes(axes)
    index = tuple(int(i) for i in index)
    if len(index) != len(lead):
        raise ValueError(
            f"index {index} needs one entry per leading axis {lead!r} of axes {axes!r}"
        )
    key: list[Any] = [slice(None)] * len(axes)
    for axis, i in zip(lead, index, strict=True):
        size = array.shape[axes.index(axis)]
        if not -size <= i < size:
            raise IndexError(f"index {i} out of range for axis {axis} of size {size}")
        key[axes.index(axis)] = i
    if region is not None:
        key[axes.index("Y")], key[axes.index("X")] = region
    remaining = "".join(a for a in axes if a not in lead)
    order = [remaining.index(a) for a in PLANE_AXES] + [
        remaining.index(a) for a in remaining if a in CHANNEL_AXES
    ]
    return np.asarray(np.transpose(array[tuple(key)], order))


def slice_view(image: ImageData, index: tuple[int, ...] = ()) -> np.ndarray:
    """The 2D slice of ``image`` at a leading-axes index: ``[Y, X]`` or ``[Y, X, C]``.

    ``index`` has one int per leading axis (``leading_axes(image.axes)``); a 2D image takes
    ``()``. The channel axis, if any, is kept and moved last.
    """
    return take_slice(image.array, image.axes, index)


def spatial_iter(image: ImageData) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield ``(index, slice)`` for every 2D slice of ``image`` (see :func:`slice_view`).

    Slices are read one at a time, so a lazy stack is never loaded whole.
    """
    for index in iter_indices(image):
        yield index, slice_view(image, index)
