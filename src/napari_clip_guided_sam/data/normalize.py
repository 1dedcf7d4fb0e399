"""Intensity normalisation: any 2D slice to the model's RGB uint8 input.

:func:`to_model_rgb` is the single place where any 2D slice (grey, RGB, RGBA, multichannel;
8/16-bit, float) becomes the ``uint8 [H, W, 3]`` image the model sees, in training and in
inference alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .axes import PLANE_AXES, placeholder_axes
from .image import ImageData
from .slicing import iter_indices, slice_view, take_slice

__all__ = [
    "NormalizeConfig",
    "PercentileStats",
    "image_percentiles",
    "normalize_image_slice",
    "slice_percentiles",
    "stack_percentiles",
    "to_model_rgb",
]

DEFAULT_PERCENTILES = (1.0, 99.8)
NormalizeMode = Literal["slice", "stack"]
NORMALIZE_MODES: tuple[NormalizeMode, ...] = ("slice", "stack")


@dataclass(frozen=True)
class NormalizeConfig:
    """How images are turned into model input.

    Attributes:
        mode: ``"slice"``: percentiles per 2D slice; ``"stack"``: percentiles computed once
            per image/stack (subsampled) and used for all its slices.
        percentiles: low and high percentiles mapped to 0 and 255.
        channels: 1-3 channel indices to use (required for >3 channels), None for all.
        sample: at most this many pixels per channel for stack statistics.
    """

    mode: NormalizeMode = "slice"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    channels: tuple[int, ...] | None = None
    sample: int = 2_000_000

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZE_MODES:
            raise ValueError(f"normalize mode must be 'slice' or 'stack', got {self.mode!r}")
        _check_percentiles(self.percentiles)
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))


@dataclass(frozen=True, eq=False)
class PercentileStats:
    """Per-channel intensity range of a whole image or stack.

    Attributes:
        low: ``[C]`` value mapped to 0, per channel of the source (before channel choice).
        high: ``[C]`` value mapped to 255.
        percentiles: the percentiles they were computed at.
    """

    low: np.ndarray
    high: np.ndarray
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES

    @property
    def n_channels(self) -> int:
        """Number of source channels covered."""
        return int(np.size(self.low))


def _check_percentiles(percentiles: Sequence[float]) -> None:
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")


# --------------------------------------------------------------------------- to_model_rgb


def to_model_rgb(
    slice2d: Any,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    stats: PercentileStats | None = None,
) -> np.ndarray:
    """Turn one 2D slice into the model's RGB input.

    Args:
        slice2d: ``[H, W]`` grey, or ``[H, W, C]`` (channel axis anywhere, see
            ``channel_axis``); any integer or float dtype, NaN/inf allowed.
        channel_axis: axis of the channels in a 3D ``slice2d``; default: the last axis.
        channels: 1-3 channel indices to use, in RGB order; required for more than 3
            channels (except uint8 RGBA, which drops alpha).
        percentiles: low/high percentiles mapped to 0/255 (per channel, per slice).
        stats: precomputed per-stack statistics used instead of per-slice percentiles.

    Returns:
        ``uint8 [H, W, 3]``. uint8 RGB/RGBA input is passed through unchanged (first three
        channels; natural-image models expect it as is). Otherwise each channel is scaled
        robustly to [0, 255]; one channel is replicated to grey RGB, two become
        ``(c0, c1, 0)``. Constant channels become zeros.

    Raises:
        ValueError: not 2D/3D, bad channel indices, or >3 channels without ``channels``.
    """
    data = _channels_last(np.asarray(slice2d), channel_axis)
    n_source = data.shape[-1]
    chosen = _choose_channels(n_source, channels, data.shape)
    if data.dtype == np.uint8 and n_source in (3, 4) and chosen == [0, 1, 2]:
        return np.ascontiguousarray(data[..., :3])
    if stats is not None and stats.n_channels != n_source:
        raise ValueError(
            f"stats cover {stats.n_channels} channels but the slice has {n_source}; compute "
            "them on the same image"
        )
    scaled = [
        _scale_channel(data[..., c], *_channel_range(data[..., c], c, percentiles, stats))
        for c in chosen
    ]
    while len(scaled) < 3:
        scaled.append(scaled[0] if len(chosen) == 1 else np.zeros_like(scaled[0]))
    return np.stack(scaled, axis=-1)


def _channels_last(data: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``[H, W, C]`` view of a 2D or 3D slice (2D gets ``C = 1``)."""
    if data.ndim == 2:
        if channel_axis is not None:
            raise ValueError(f"channel_axis={channel_axis} given for a 2D slice {data.shape}")
        return data[..., np.newaxis]
    if data.ndim != 3:
        raise ValueError(
            f"expected a 2D slice [H, W] or [H, W, C], got shape {data.shape}; take one slice "
            "of a stack first (slice_view)"
        )
    return np.moveaxis(data, -1 if channel_axis is None else channel_axis, -1)


def _choose_channels(n_source: int, channels: Sequence[int] | None, shape: tuple) -> list[int]:
    if channels is None:
        if n_source > 3 and n_source != 4:
            raise ValueError(
                f"the slice has {n_source} channels (shape {shape}, channels last); choose "
                "1-3 of them as RGB (--channels on the command line, channels=[...] in Python), "
                "or give the right channel_axis"
            )
        if n_source == 4:  # RGBA: alpha is not image content
            return [0, 1, 2]
        return list(range(n_source))
    chosen = [int(c) for c in channels]
    if not 1 <= len(chosen) <= 3:
        raise ValueError(f"channels must list 1 to 3 channel indices, got {list(channels)}")
    bad = [c for c in chosen if not 0 <= c < n_source]
    if bad:
        raise ValueError(
            f"channel indices {bad} out of range: the slice has {n_source} channels "
            f"(valid 0..{n_source - 1})"
        )
    return chosen


def _channel_range(
    channel: np.ndarray,
    index: int,
    percentiles: tuple[float, float],
    stats: PercentileStats | None,
) -> tuple[float, float]:
    if stats is not None:
        return float(stats.low[index]), float(stats.high[index])
    return _finite_percentiles(channel, percentiles)


def _finite_percentiles(
    values: np.ndarray, percentiles: tuple[float, float]
) -> tuple[float, float]:
    """Low/high percentiles over the finite values; ``(0, 0)`` if there are none."""
    _check_percentiles(percentiles)
    values = np.asarray(values).ravel()
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    elif values.dtype == bool:
        values = values.astype(np.uint8)
    if values.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)


def _scale_channel(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` to ``[0, 255]`` as uint8; NaN -> 0, constant -> zeros."""
    if not high > low:  # constant channel (or no finite values)
        return np.zeros(channel.shape, np.uint8)
    work = channel.astype(np.float64 if channel.dtype.itemsize > 4 else np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        work = (work - low) * (255.0 / (high - low))
        work = np.clip(work, 0.0, 255.0)
    work = np.nan_to_num(work, nan=0.0)
    return (work + 0.5).astype(np.uint8)


def normalize_image_slice(
    image: ImageData,
    index: tuple[int, ...] = (),
    config: NormalizeConfig | None = None,
    stats: PercentileStats | None = None,
) -> np.ndarray:
    """``uint8 [H, W, 3]`` model input for one slice of ``image`` under ``config``.

    In ``"stack"`` mode pass ``stats`` (from :func:`image_percentiles`) to avoid recomputing
    them for every slice; they are computed here otherwise.
    """
    config = config or NormalizeConfig()
    if config.mode == "stack" and stats is None:
        stats = image_percentiles(image, config.percentiles, sample=config.sample)
    data = slice_view(image, index)
    return to_model_rgb(
        data,
        channel_axis=-1 if data.ndim == 3 else None,
        channels=config.channels,
        percentiles=config.percentiles,
        stats=stats if config.mode == "stack" else None,
    )


# --------------------------------------------------------------------------- stack statistics


def stack_percentiles(
    stack: Any,
    channel_axis: int | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    sample: int = 2_000_000,
    max_slices: int = 32,
) -> PercentileStats:
    """Per-channel percentiles of a whole stack, computed once from a subsample.

    Args:
        stack: ``[..., H, W]`` array (numpy or dask); the last two non-channel axes are Y, X.
        channel_axis: the channel axis, or None for single-channel data.
        percentiles: low/high percentiles.
        sample: at most about this many pixels per channel are used.
        max_slices: at most this many evenly spaced slices are read.

    Returns:
        :class:`PercentileStats` with ``low``/``high`` of shape ``[C]``.
    """
    ndim = len(stack.shape)
    if ndim < 2:
        raise ValueError(f"a stack needs at least 2 dimensions, got shape {tuple(stack.shape)}")
    if channel_axis is None:
        axes = placeholder_axes(ndim - 2) + PLANE_AXES
    else:
        if ndim < 3:
            raise ValueError(
                f"channel_axis={channel_axis} needs a stack of at least 3 dimensions "
                f"(Y, X, C), got shape {tuple(stack.shape)}"
            )
        letters = list(placeholder_axes(ndim - 3) + PLANE_AXES)
        letters.insert(channel_axis % ndim, "C")
        axes = "".join(letters)
    return image_percentiles(
        ImageData(stack, axes), percentiles, sample=sample, max_slices=max_slices
    )


def image_percentiles(
    image: ImageData,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    sample: int = 2_000_000,
    max_slices: int = 32,
) -> PercentileStats:
    """Per-channel percentiles over all slices of ``image`` (see :func:`stack_percentiles`)."""
    _check_percentiles(percentiles)
    indices = list(iter_indices(image))
    picked = _evenly_spaced(len(indices), max_slices)
    per_slice = max(1, sample // len(picked))
    parts: list[np.ndarray] = []
    for k in picked:
        data = slice_view(image, indices[k])
        data = data[..., np.newaxis] if data.ndim == 2 else data
        step = max(1, math.ceil(math.sqrt(data.shape[0] * data.shape[1] / per_slice)))
        parts.append(data[::step, ::step].reshape(-1, data.shape[-1]))
    return _percentile_stats(np.concatenate(parts, axis=0), percentiles)


def slice_percentiles(
    image: ImageData,
    index: tuple[int, ...] = (),
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    sample: int = 2_000_000,
) -> PercentileStats:
    """Per-channel percentiles of one slice from an evenly strided subsample of at most about
    ``sample`` pixels, read without reading the whole slice: the windows of a tiled image
    share them, so each window is scaled like the whole slice (docs/batch.md, "Tiling")."""
    _check_percentiles(percentiles)
    height, width = (image.shape[image.axes.index(a)] for a in PLANE_AXES)
    step = max(1, math.ceil(math.sqrt(height * width / sample)))
    strided = (slice(None, None, step), slice(None, None, step))
    data = take_slice(image.array, image.axes, index, strided)
    data = data[..., np.newaxis] if data.ndim == 2 else data
    return _percentile_stats(data.reshape(-1, data.shape[-1]), percentiles)


def _percentile_stats(values: np.ndarray, percentiles: tuple[float, float]) -> PercentileStats:
    """Per-channel percentiles of pixel values ``[n, C]``."""
    ranges = [_finite_percentiles(values[:, c], percentiles) for c in range(values.shape[1])]
    low, high = (np.array(r, dtype=np.float64) for r in zip(*ranges, strict=True))
    return PercentileStats(low, high, (percentiles[0], percentiles[1]))


def _evenly_spaced(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})
