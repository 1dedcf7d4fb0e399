"""Training samples in the SAM input frame: preparation, caching, augmentation, batches.

A sample (uint8 RGB [H, W, 3] + bool mask [H, W] + class name) becomes the SAM input
tensor through the same `prepare_image` inference uses, and its mask is carried into the
same frame with nearest-neighbour resizing. Augmentation (flips and quarter turns; for
microscopy also intensity, scale and blur jitter, `Augmentation`) acts on the prepared
tensors, so each file is read, normalised and resized once per run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import train_val_split
from ..data.transforms import draw_flip_rotation
from ..model.config import ModelConfig
from ..model.preprocess import InputFrame, prepare_image
from ..model.sam import PIXEL_MEAN, PIXEL_STD
from .crops import training_window


@dataclass(frozen=True)
class PreparedSample:
    """One (image, class) example ready for the model."""

    image: torch.Tensor  # [3, S, S] SAM-normalised float32
    mask: torch.Tensor  # [S, S] bool, the ground truth in the SAM frame
    frame: InputFrame  # maps logits back to the original size
    class_name: str
    source: str
    valid: torch.Tensor | None = None  # [S, S] bool, pixels that count (None: all)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.valid is None else self.valid.numel()
        return self.image.numel() * self.image.element_size() + self.mask.numel() + extra


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


def prepare_sample(sample, config: ModelConfig, window: bool = True) -> PreparedSample:
    """A `data.datasets.Sample` (image uint8 [H, W, 3], mask bool [H, W]) -> PreparedSample.

    window: an image inference would tile becomes one window of its tile plan at full
    resolution (`training.crops`); smaller ones, or all when False, are resized whole.

    Raises:
        ValueError: the image breaks the model's input contract (`validate_rgb`, e.g. too
            small); the message starts with the sample's source.
    """
    if window:
        sample = training_window(sample, config.sam.image_size)
    source = getattr(sample, "source", "")
    try:
        image, frame = prepare_image(sample.image, config.sam.image_size, config.resize)
    except ValueError as error:
        raise ValueError(f"{source}: {error}" if source else str(error)) from error
    valid = getattr(sample, "valid", None)
    return PreparedSample(
        image=image,
        mask=mask_to_frame(sample.mask, frame),
        frame=frame,
        class_name=sample.class_name,
        source=source,
        # Padding (longest-side resize) is outside the valid pixels.
        valid=None if valid is None else mask_to_frame(valid, frame),
    )


class PreparedCache:
    """Prepared samples of a dataset, kept in memory up to `max_bytes` (first come).

    Preparation is deterministic, so a cached and a recomputed sample are identical; the
    cache only saves time (reading, normalising and resizing large files).
    """

    def __init__(
        self, data: Sequence, config: ModelConfig, max_bytes: int, *, windows: bool = True
    ):
        self.data = data
        self.windows = windows  # large images cut to one window (`prepare_sample`)
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
        prepared = prepare_sample(self.data[index], self.config, self.windows)
        if self._bytes + prepared.nbytes <= self.max_bytes:
            self._items[index] = prepared
            self._bytes += prepared.nbytes
        return prepared

    def fill(self) -> Iterator[int]:
        """Prepare samples in order while they fit in memory (the others are prepared when
        used); yields how many are ready after each one."""
        for index in range(len(self)):
            self[index]
            if index not in self._items:
                return
            yield index + 1

    def original_mask(self, index: int) -> np.ndarray:
        """The ground truth at the original size, bool [H, W] (for validation metrics)."""
        return self.original_truth(index)[0]

    def original_truth(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The ground truth at the original size, bool [H, W], and the pixels that count
        (bool [H, W]; None: all), read in one access."""
        sample = self.data[index]
        if self.windows:
            sample = training_window(sample, self.config.sam.image_size)
        valid = getattr(sample, "valid", None)
        mask = np.asarray(sample.mask, dtype=bool)
        return mask, None if valid is None else np.asarray(valid, dtype=bool)


@dataclass(frozen=True)
class Augmentation:
    """Random changes of a training example, drawn per batch from the engine's generator.

    Attributes:
        flips: horizontal/vertical flips and quarter turns (as `data.transforms` draws them).
        intensity: contrast x [0.75, 1.33], brightness +-0.08 of the range and gamma
            [0.75, 1.33] (log-uniform), the same for all channels, on the 0-255 image.
        scale: zoom by [0.75, 1.33] (log-uniform) about a random centre, reflecting at the
            border; image bilinear, mask nearest.
        blur: with probability 0.25 a Gaussian blur, sigma 0.5-1.5 px of the SAM frame.

    Draws happen in this order, and only for the enabled operations.
    """

    flips: bool = True
    intensity: bool = False
    scale: bool = False
    blur: bool = False

    @property
    def enabled(self) -> bool:
        return self.flips or self.intensity or self.scale or self.blur

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        valid: torch.Tensor | None,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augment image [3, S, S] (SAM-normalised), mask [S, S] and valid [S, S] alike."""
        if self.flips:
            image, mask, valid = _flip_rotate(image, mask, valid, draw_flip_rotation(rng))
        if self.scale:
            image, mask, valid = _zoom(image, mask, valid, rng)
        if self.intensity:
            image = _jitter_intensity(image, rng)
        if self.blur and rng.random() < 0.25:
            image = _blur(image, float(rng.uniform(0.5, 1.5)))
        return image, mask, valid


def _flip_rotate(image, mask, valid, drawn):
    tensors = [image, mask] + ([] if valid is None else [valid])
    if drawn.hflip:
        tensors = [t.flip(-1) for t in tensors]
    if drawn.vflip:
        tensors = [t.flip(-2) for t in tensors]
    if drawn.turns:
        tensors = [t.rot90(drawn.turns, (-2, -1)) for t in tensors]
    return tensors[0], tensors[1], tensors[2] if valid is not None else None


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _zoom(image, mask, valid, rng):
    """Zoom by a random factor about a random centre (reflection beyond the border)."""
    factor = _log_uniform(rng, 0.75, 1.33)
    shift = rng.uniform(-1.0, 1.0, size=2) * abs(1.0 - 1.0 / factor)
    theta = torch.tensor(
        [[1.0 / factor, 0.0, shift[0]], [0.0, 1.0 / factor, shift[1]]], dtype=torch.float32
    )[None]
    size = image.shape[-1]
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)

    def sample(tensor: torch.Tensor, mode: str) -> torch.Tensor:
        source = tensor.float()[None] if tensor.dim() == 3 else tensor.float()[None, None]
        out = F.grid_sample(source, grid, mode=mode, padding_mode="reflection", align_corners=False)
        return out[0] if tensor.dim() == 3 else out[0, 0]

    image = sample(image, "bilinear")
    mask = sample(mask, "nearest") > 0.5
    valid = None if valid is None else sample(valid, "nearest") > 0.5
    return image, mask, valid


_MEAN = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
_STD = torch.tensor(PIXEL_STD).view(3, 1, 1)


def _jitter_intensity(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Contrast, brightness and gamma on the 0-255 image behind the normalised tensor."""
    contrast = _log_uniform(rng, 0.75, 1.33)
    brightness = float(rng.uniform(-0.08, 0.08))
    gamma = _log_uniform(rng, 0.75, 1.33)
    unit = ((image * _STD + _MEAN) / 255.0).clamp(0.0, 1.0)
    centre = unit.mean()
    unit = ((unit - centre) * contrast + centre + brightness).clamp(0.0, 1.0) ** gamma
    return (unit * 255.0 - _MEAN) / _STD


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)[0]


@dataclass
class Batch:
    """B examples stacked for one forward pass."""

    images: torch.Tensor  # [B, 3, S, S]
    masks: torch.Tensor  # [B, S, S] bool
    class_names: list[str]
    valid: torch.Tensor | None = None  # [B, S, S] bool pixels that count; None: all


def collate(
    samples: Sequence[PreparedSample],
    rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
    augmentation: Augmentation = Augmentation(),
) -> Batch:
    """Stack prepared samples, augmenting each with `augmentation` drawn from `rng` (none
    without a generator): one generator for all samples in turn, or one per sample (the
    fixed augmentation variants of a cached prefix, `training.compute`)."""
    if rng is None or isinstance(rng, np.random.Generator):
        generators: Sequence[np.random.Generator | None] = [rng] * len(samples)
    else:
        generators = rng
    images, masks, valids = [], [], []
    for sample, generator in zip(samples, generators, strict=True):
        image, mask, valid = sample.image, sample.mask, sample.valid
        if generator is not None and augmentation.enabled:
            image, mask, valid = augmentation(image, mask, valid, generator)
        images.append(image)
        masks.append(mask)
        valids.append(valid)
    stacked_valid = None
    if any(v is not None for v in valids):
        stacked_valid = torch.stack(
            [torch.ones_like(m) if v is None else v for m, v in zip(masks, valids, strict=True)]
        )
    return Batch(
        torch.stack(images), torch.stack(masks), [s.class_name for s in samples], stacked_valid
    )


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

    @property
    def class_map(self) -> Any:
        """The `data.class_map.ClassMap` of the data, if it has one."""
        return getattr(self.data, "class_map", None)


def split_dataset(dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Deterministic train/validation views of a `SliceDataset` (all classes of one slice
    stay on the same side)."""
    train_indices, val_indices = train_val_split(dataset, val_fraction, seed)
    return Subset(dataset, train_indices), Subset(dataset, val_indices)
