"""Training data: a dataset of (slice, class) samples from image/label pairs.

A :class:`SliceDataset` holds image/label pairs (2D images or stacks) and yields one
:class:`Sample` per (2D slice, class) pair: the slice through :func:`to_model_rgb` and the
binary mask of that class. This is the only module of ``data`` that imports torch.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from .axes import CHANNEL_AXES, default_axes, leading_axes
from .class_map import ClassMap
from .folders import match_by_stem
from .image import ImageData, ImageReadError
from .normalize import NormalizeConfig, PercentileStats, image_percentiles, normalize_image_slice
from .reader import read_image, read_image_lazy
from .slicing import iter_indices, n_slices, take_slice

__all__ = ["Sample", "SliceDataset", "infer_axes", "train_val_split"]


@dataclass
class Sample:
    """One training example.

    Attributes:
        image: ``uint8 [H, W, 3]`` model input (already through ``to_model_rgb``).
        mask: ``bool [H, W]`` pixels of ``class_name``.
        class_name: the class prompt, e.g. ``"nucleus"``.
        source: file and slice it came from, for messages, e.g. ``"a.tif Z=3"``.
        valid: ``bool [H, W]`` pixels that count (the class map's ignore value excluded);
            None: every pixel counts.
    """

    image: np.ndarray
    mask: np.ndarray
    class_name: str
    source: str
    valid: np.ndarray | None = None


# --------------------------------------------------------------------------- pairs


def infer_axes(image_shape: Sequence[int], labels_shape: Sequence[int]) -> str:
    """Guess the image axes from the image and label shapes.

    Equal shapes: no channels (``YX``, ``ZYX``, ``TZYX``). One more image dimension: a
    channel axis last (``YXC``, ``ZYXC``) if the other dimensions equal the labels' shape,
    else first (``CYX``, ``CZYX``).

    Raises:
        ValueError: the shapes do not fit any of these layouts.
    """
    image_shape, labels_shape = tuple(image_shape), tuple(labels_shape)
    spatial = default_axes(len(labels_shape))
    if spatial is not None and image_shape == labels_shape:
        return spatial
    if spatial is not None and len(image_shape) == len(labels_shape) + 1:
        if image_shape[:-1] == labels_shape:
            return spatial + "C"
        if image_shape[1:] == labels_shape:
            return "C" + spatial
    raise ValueError(
        f"cannot tell the axes of an image of shape {image_shape} with labels of shape "
        f"{labels_shape}; pass the axes (e.g. 'ZYXC') with the pair"
    )


def _guess_axes(image_shape: tuple[int, ...], labels: np.ndarray) -> tuple[str, np.ndarray]:
    """Axes of a plain image array, and the labels with extra leading singletons dropped."""
    candidate = labels
    while True:
        try:
            return infer_axes(image_shape, candidate.shape), candidate
        except ValueError:
            if candidate.ndim <= 2 or candidate.shape[0] != 1:
                break
            candidate = candidate[0]
    no_channels = default_axes(len(image_shape))
    if no_channels is not None:  # the shape check then reports the mismatch
        return no_channels, labels
    return infer_axes(image_shape, labels.shape), labels  # raises with both shapes


@dataclass
class _Pair:
    """One image (or stack) with its labels, ready to slice."""

    image: ImageData
    labels: np.ndarray  # shape = image shape without the channel axis
    label_axes: str
    name: str
    stats: PercentileStats | None = None


def _as_labels(labels: Any, name: str) -> np.ndarray:
    """Integer label array; integral floats are accepted, channels are not."""
    if isinstance(labels, ImageData):
        channel = labels.channel_axis
        if channel is not None and labels.shape[channel] != 1:
            raise ValueError(
                f"labels {name} have {labels.shape[channel]} channels; "
                "expected a single-channel label image"
            )
        array = np.asarray(labels.array)
        array = np.squeeze(array, channel) if channel is not None else array
    else:
        array = np.asarray(labels)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(
                f"labels {name} are floats with non-integer values; expected integer label values"
            )
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"labels {name} have dtype {array.dtype}; expected integers")
    return array


def _fit_labels(
    labels: np.ndarray, expected: tuple[int, ...], names: str, shape: tuple
) -> np.ndarray:
    """``labels`` reshaped to ``expected`` when they differ only by singleton axes."""
    if labels.shape == expected:
        return labels
    squeeze = tuple(s for s in labels.shape if s != 1)
    if squeeze == tuple(s for s in expected if s != 1):
        return labels.reshape(expected)
    raise ValueError(
        f"shape mismatch for {names}: image shape {shape} (spatial {expected}) but labels "
        f"shape {labels.shape}; they must cover the same pixels"
    )


def _make_pair(item: Sequence[Any], position: int) -> _Pair:
    if len(item) not in (2, 3):
        raise ValueError(f"pair {position}: expected (image, labels) or (image, labels, axes)")
    image, labels, axes = (*item, None) if len(item) == 2 else item
    image_name = image.name if isinstance(image, ImageData) and image.path else f"pair {position}"
    labels = _as_labels(labels, image_name)
    if not isinstance(image, ImageData):
        if axes is None:
            axes, labels = _guess_axes(tuple(np.shape(image)), labels)
        image = ImageData(image, axes)
    elif axes is not None and axes.upper() != image.axes:
        image = ImageData(image.array, axes, None, None, image.path, image.metadata)
    keep = [i for i, a in enumerate(image.axes) if a not in CHANNEL_AXES]
    expected = tuple(image.shape[i] for i in keep)
    labels = _fit_labels(labels, expected, image_name, image.shape)
    label_axes = "".join(image.axes[i] for i in keep)
    return _Pair(image, labels, label_axes, image_name)


def _format_index(axes: str, index: tuple[int, ...]) -> str:
    return " ".join(f"{a}={i}" for a, i in zip(axes, index, strict=True))


# --------------------------------------------------------------------------- dataset


class SliceDataset(Dataset):
    """(2D slice, class) samples from image/label pairs.

    Args:
        pairs: ``(image, labels)`` or ``(image, labels, axes)``; ``image`` an
            :class:`ImageData` or array (2D image or stack, channels allowed), ``labels`` an
            integer array (or ImageData) of the image's shape without channels.
        class_map: which label values form which class.
        skip_empty: leave out (slice, class) pairs where the class has no pixel.
        normalize: settings for :func:`to_model_rgb` (per-slice or per-stack percentiles).
        cache_size: number of converted slices kept (LRU); items of one slice share it.
        transform: optional ``Sample -> Sample`` applied to each item (augmentation).
        errors: ``"raise"`` on a bad pair, or ``"warn"``: skip it, warn, list it in
            :attr:`skipped`.

    Items are ordered slice by slice, classes in ``class_map.class_names`` order. Only
    indices are stored; slices are read and converted on access.
    """

    def __init__(
        self,
        pairs: Sequence[Sequence[Any]],
        class_map: ClassMap,
        *,
        skip_empty: bool = False,
        normalize: NormalizeConfig | None = None,
        cache_size: int = 8,
        transform: Callable[[Sample], Sample] | None = None,
        errors: Literal["raise", "warn"] = "raise",
    ) -> None:
        if not isinstance(class_map, ClassMap):
            raise TypeError(f"class_map must be a ClassMap, got {type(class_map).__name__}")
        self.class_map = class_map
        self.skip_empty = skip_empty
        self.normalize = normalize or NormalizeConfig()
        self.transform = transform
        self.cache_size = cache_size
        self.skipped: list[tuple[Path | str, str]] = []
        self.unmatched: list[Path] = []
        self._pairs: list[_Pair] = []
        self._items: list[tuple[int, tuple[int, ...], str]] = []
        self._cache: OrderedDict[tuple[int, tuple[int, ...]], np.ndarray] = OrderedDict()
        for position, item in enumerate(pairs):
            try:
                self._add_pair(_make_pair(item, position))
            except (ValueError, ImageReadError) as exc:
                if errors == "raise":
                    raise
                self._skip(_item_path(item, position), str(exc))

    @classmethod
    def from_folders(
        cls,
        image_dir: str | Path,
        label_dir: str | Path,
        class_map: ClassMap,
        *,
        lazy: bool = False,
        label_suffix: str = "",
        **kwargs: Any,
    ) -> SliceDataset:
        """Dataset from an image folder and a label folder paired by file stem.

        Unreadable or inconsistent pairs are skipped with a warning and listed in
        ``dataset.skipped`` as ``(path, reason)``; files without a partner are listed in
        ``dataset.unmatched``. ``lazy`` opens images with :func:`read_image_lazy`.

        Raises:
            ValueError: a folder is empty, nothing matches, or no pair is usable.
        """
        matches = match_by_stem(image_dir, label_dir, label_suffix=label_suffix)
        reader = read_image_lazy if lazy else read_image
        loaded, skipped = [], []
        for image_path, label_path in matches:
            try:
                loaded.append((reader(image_path), read_image(label_path)))
            except ImageReadError as exc:
                skipped.append((image_path, str(exc)))
                warnings.warn(f"skipping {image_path.name}: {exc}", stacklevel=2)
        dataset = cls(loaded, class_map, errors="warn", **kwargs)
        dataset.skipped = skipped + dataset.skipped
        dataset.unmatched = matches.unmatched
        if matches.unmatched:
            names = ", ".join(p.name for p in matches.unmatched[:5])
            warnings.warn(
                f"{len(matches.unmatched)} file(s) without a partner left out: {names}",
                stacklevel=2,
            )
        if not dataset._pairs:
            reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in dataset.skipped[:5])
            raise ValueError(
                f"no usable image/label pair in {image_dir} and {label_dir}: {reasons}"
            )
        return dataset

    def _skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append((path, reason))
        name = path.name if isinstance(path, Path) else path
        warnings.warn(f"skipping {name}: {reason}", stacklevel=3)

    def _add_pair(self, pair: _Pair) -> None:
        """Validate the labels against the class map and index the pair's items."""
        items: list[tuple[int, tuple[int, ...], str]] = []
        found: set[int] = set()
        k = len(self._pairs)
        for index in iter_indices(pair.image):
            values = np.unique(take_slice(pair.labels, pair.label_axes, index))
            found.update(int(v) for v in values)
            present = set(self.class_map.classes_present(values))
            for name in self.class_map.class_names:
                if name in present or not self.skip_empty:
                    items.append((k, index, name))
        self.class_map.check_values(found, pair.name)
        if self.normalize.mode == "stack":
            pair.stats = image_percentiles(
                pair.image, self.normalize.percentiles, sample=self.normalize.sample
            )
        self._pairs.append(pair)
        self._items.extend(items)

    # -- access

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a dataset of {len(self)} items")
        k, index, class_name = self._items[i]
        pair = self._pairs[k]
        labels = take_slice(pair.labels, pair.label_axes, index)
        sample = Sample(
            image=self._rgb(k, index).copy(),
            mask=self.class_map.mask(labels, class_name),
            class_name=class_name,
            source=self._source(pair, index),
            valid=self.class_map.valid(labels),
        )
        return self.transform(sample) if self.transform is not None else sample

    def labels_of(self, i: int) -> np.ndarray:
        """The label slice behind item ``i`` (as in the file; e.g. for instance scores)."""
        k, index, _ = self._items[i]
        pair = self._pairs[k]
        return np.asarray(take_slice(pair.labels, pair.label_axes, index))

    def _rgb(self, k: int, index: tuple[int, ...]) -> np.ndarray:
        key = (k, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        pair = self._pairs[k]
        rgb = normalize_image_slice(pair.image, index, self.normalize, pair.stats)
        if self.cache_size > 0:
            self._cache[key] = rgb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return rgb

    @staticmethod
    def _source(pair: _Pair, index: tuple[int, ...]) -> str:
        where = _format_index(leading_axes(pair.label_axes), index)
        return f"{pair.name} {where}".strip()

    # -- structure

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the class map."""
        return self.class_map.class_names

    @property
    def slice_keys(self) -> list[tuple[int, tuple[int, ...]]]:
        """Per item, ``(pair number, slice index)``: items with equal keys share a slice."""
        return [(k, index) for k, index, _ in self._items]

    @property
    def items(self) -> list[tuple[int, tuple[int, ...], str]]:
        """Per item, ``(pair number, slice index, class name)``."""
        return list(self._items)

    @property
    def images(self) -> list[ImageData]:
        """The image of every pair, in order (their paths and calibration)."""
        return [pair.image for pair in self._pairs]

    @property
    def n_pairs(self) -> int:
        """Number of usable image/label pairs."""
        return len(self._pairs)

    @property
    def n_slices(self) -> int:
        """Total number of 2D slices over all pairs (including slices without items)."""
        return sum(n_slices(p.image) for p in self._pairs)


def _item_path(item: Sequence[Any], position: int) -> Path | str:
    image = item[0] if item else None
    if isinstance(image, ImageData) and image.path is not None:
        return image.path
    return f"pair {position}"


# --------------------------------------------------------------------------- split


def train_val_split(
    n_items_or_dataset: int | SliceDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split of item indices, by slice.

    All items of one slice (its classes) land on the same side. There is always at least
    one training slice; with ``val_fraction > 0`` and at least two slices, also at least one
    validation slice.

    Args:
        n_items_or_dataset: a :class:`SliceDataset` (split by ``slice_keys``) or a number
            of items (each its own slice).
        val_fraction: fraction of slices for validation, in ``[0, 1)``.
        seed: seed of the permutation.

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if isinstance(n_items_or_dataset, int):
        keys: list[Any] = list(range(n_items_or_dataset))
    else:
        keys = list(n_items_or_dataset.slice_keys)
    groups = list(dict.fromkeys(keys))
    n_val = round(val_fraction * len(groups))
    if val_fraction > 0 and len(groups) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(len(groups) - 1, 0))  # one slice alone always trains
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[g] for g in order[:n_val]}
    train = [i for i, key in enumerate(keys) if key not in val_groups]
    val = [i for i, key in enumerate(keys) if key in val_groups]
    return train, val
