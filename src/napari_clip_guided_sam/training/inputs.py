"""Training samples in the SAM input frame: preparation, caching, augmentation, batches.

A sample (uint8 RGB [H, W, 3] + bool mask [H, W] + class name) becomes the SAM input
tensor through the same `prepare_image` inference uses, and its mask is carried into the
same frame with nearest-neighbour resizing. Augmentation (flips, quarter turns) acts on the
prepared tensors, so each file is read, normalised and resized once per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import train_val_split
from ..data.transforms import draw_flip_rotation
from ..model.config import ModelConfig
from ..model.preprocess import InputFrame, prepare_image


@dataclass(frozen=True)
class PreparedSample:
    """One (image, class) example ready for the model."""

    image: torch.Tensor  # [3, S, S] SAM-normalised float32
    mask: torch.Tensor  # [S, S] bool, the ground truth in the SAM frame
    frame: InputFrame  # maps logits back to the original size
    class_name: str
    source: str

    @property
    def nbytes(self) -> int:
        return self.image.numel() * self.image.element_size() + self.mask.numel()


def mask_to_frame(mask: np.ndarray, frame: InputFrame) -> torch.Tensor:
    """bool [H, W] mask -> bool [S, S] in the SAM input frame (nearest; same geometry as
    `prepare_image`: squashed, or longest side resized and padded bottom-right)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != frame.original_size:
        raise ValueError(
            f"Mask shape {mask.shape} differs from the image's {frame.original_size}; image "
            "and labels must cover the same pixels."
        )
    content_h, content_w = frame.content_size
    resized = mask[_nearest_indices(mask.shape[0], content_h)][
        :, _nearest_indices(mask.shape[1], content_w)
    ]
    framed = np.zeros((frame.input_size, frame.input_size), dtype=bool)
    framed[:content_h, :content_w] = resized
    return torch.from_numpy(framed)


def _nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target pixel, sampled at pixel centres (no half-pixel shift)."""
    centres = (np.arange(target) + 0.5) * (source / target)
    return np.minimum(centres.astype(np.int64), source - 1)


def mask_to_logit_size(masks: torch.Tensor, size: int) -> torch.Tensor:
    """bool [P, S, S] -> float {0, 1} [P, size, size] (nearest at pixel centres), the loss
    target."""
    resized = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest-exact")
    return resized[:, 0]


def prepare_sample(sample, config: ModelConfig) -> PreparedSample:
    """A `data.datasets.Sample` (image uint8 [H, W, 3], mask bool [H, W]) -> PreparedSample."""
    image, frame = prepare_image(sample.image, config.sam.image_size, config.resize)
    return PreparedSample(
        image=image,
        mask=mask_to_frame(sample.mask, frame),
        frame=frame,
        class_name=sample.class_name,
        source=getattr(sample, "source", ""),
    )


class PreparedCache:
    """Prepared samples of a dataset, kept in memory up to `max_bytes` (first come).

    Preparation is deterministic, so a cached and a recomputed sample are identical; the
    cache only saves time (reading, normalising and resizing large files).
    """

    def __init__(self, data: Sequence, config: ModelConfig, max_bytes: int):
        self.data = data
        self.config = config
        self.max_bytes = max_bytes
        self._items: dict[int, PreparedSample] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> PreparedSample:
        cached = self._items.get(index)
        if cached is not None:
            return cached
        prepared = prepare_sample(self.data[index], self.config)
        if self._bytes + prepared.nbytes <= self.max_bytes:
            self._items[index] = prepared
            self._bytes += prepared.nbytes
        return prepared

    def original_mask(self, index: int) -> np.ndarray:
        """The ground truth at the original size, bool [H, W] (for validation metrics)."""
        return np.asarray(self.data[index].mask, dtype=bool)


def augment(
    image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal/vertical flip and quarter turn of image [3, S, S] and mask [S, S]
    (drawn as `data.transforms` draws them for arrays)."""
    drawn = draw_flip_rotation(rng)
    if drawn.hflip:
        image, mask = image.flip(-1), mask.flip(-1)
    if drawn.vflip:
        image, mask = image.flip(-2), mask.flip(-2)
    if drawn.turns:
        image, mask = image.rot90(drawn.turns, (-2, -1)), mask.rot90(drawn.turns, (-2, -1))
    return image, mask


@dataclass
class Batch:
    """B examples stacked for one forward pass."""

    images: torch.Tensor  # [B, 3, S, S]
    masks: torch.Tensor  # [B, S, S] bool
    class_names: list[str]


def collate(samples: Sequence[PreparedSample], rng: np.random.Generator | None = None) -> Batch:
    """Stack prepared samples, augmenting each with `rng` when given."""
    images, masks = [], []
    for sample in samples:
        image, mask = sample.image, sample.mask
        if rng is not None:
            image, mask = augment(image, mask, rng)
        images.append(image)
        masks.append(mask)
    return Batch(torch.stack(images), torch.stack(masks), [s.class_name for s in samples])


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """One batch of the examples of several, in order (tensors concatenated along the
    batch axis, lists joined)."""
    values = {}
    for field in dataclasses.fields(Batch):
        parts = [getattr(batch, field.name) for batch in batches]
        if isinstance(parts[0], torch.Tensor):
            values[field.name] = torch.cat(parts)
        elif parts[0] is None:
            values[field.name] = None
        else:
            values[field.name] = [item for part in parts for item in part]
    return Batch(**values)


class Subset(Sequence):
    """A view of `data` at `indices` (lazy: items are read on access)."""

    def __init__(self, data: Sequence, indices: Sequence[int]):
        self.data = data
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Subset: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Subset(self.data, self.indices[index])
        return self.data[self.indices[index]]

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return getattr(self.data, "class_names", None)


def split_dataset(dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Deterministic train/validation views of a `SliceDataset` (all classes of one slice
    stay on the same side)."""
    train_indices, val_indices = train_val_split(dataset, val_fraction, seed)
    return Subset(dataset, train_indices), Subset(dataset, val_indices)
