"""How to train (`TrainingConfig`) and each preset's default learning rates.

The model's own settings (loss, prompts) live in its `ModelConfig`; each preset's recipe
(epochs, schedule, augmentation, sampling) in `training.recipe`. See docs/training.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.modes import check_mode
from ..model.config import FROM_SCRATCH_PRESETS
from .inputs import Augmentation
from .settings import check_settings

# Learning rates by preset. The paper's 5e-5 / 1e-7 fine-tune pretrained SAM and CLIP; the
# presets trained from scratch (`tiny`, `tiny_448`) learn nothing useful at 5e-5 in minutes.
DEFAULT_LEARNING_RATES: dict[str, tuple[float, float]] = {
    name: (1e-3, 1e-4) for name in FROM_SCRATCH_PRESETS
}
PAPER_LEARNING_RATES = (5e-5, 1e-7)


def default_learning_rates(preset: str) -> tuple[float, float]:
    """(lr, clip_lr) defaults for a preset name."""
    return DEFAULT_LEARNING_RATES.get(preset, PAPER_LEARNING_RATES)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train; the model's own settings (loss, prompts) live in its ModelConfig."""

    epochs: int | None = 10  # None: as many as the time budget allows
    lr: float = 5e-5  # adapters, mask decoder, prompt encoder
    clip_lr: float = 1e-7  # CLIP's trainable attention and text positional embedding
    # AdamW weight decay per group, as released: 1e-3 for adapters, mask decoder and prompt
    # encoder, none for CLIP. A resumed run keeps the interrupted run's.
    weight_decay: float = 1e-3
    clip_weight_decay: float = 0.0
    batch_size: int = 1
    grad_accumulation: int = 1  # batches per optimiser step
    mode: str = "text"  # "text": CLIP-sampled points (train-test alignment); "manual": GT points
    val_fraction: float = 0.2  # used when splitting one dataset (`split_dataset`)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto" = the precision measured fastest on the device
    output_dir: str | None = None  # None: train without writing checkpoints
    best_name: str = "best.safetensors"
    last_name: str = "last.safetensors"
    best_metric: str = "miou"  # validation metric that selects the best checkpoint
    augment: bool = True  # random flips and quarter turns
    augment_intensity: bool = False  # contrast, brightness and gamma jitter
    augment_scale: bool = False  # zoom jitter
    augment_blur: bool = False  # occasional Gaussian blur
    balance: bool = False  # draw examples balanced over classes and foreground sizes
    schedule: str = "constant"  # learning rate: "constant" or "cosine" (warm-up + cosine)
    warmup: float = 0.03  # fraction of the run spent warming up ("cosine")
    max_steps: int | None = None  # stop after this many optimiser steps in total
    time_budget_s: float | None = None  # stop after this much training time in total
    checkpoint_every: int | None = None  # also write the last checkpoint every N steps
    cache_mb: int = 2048  # memory for prepared inputs (each file is read once when it fits)
    # CPU-friendly training (training.compute): recompute trained encoder blocks in the
    # backward ("auto": on the CPU when they would keep > 2 GiB), memory and disk for the
    # frozen prefix per image (used when the model has one), and how many fixed draws of
    # the chosen augmentations each sample cycles through (0: a fresh draw per visit; None:
    # 2 with a cached prefix, else 0).
    activation_checkpointing: str = "auto"
    prefix_cache_mb: int = 2048
    prefix_cache_disk_mb: int = 8192
    augment_variants: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        # Every numeric setting finite and in range, every named choice known
        # (training.settings).
        check_settings(self)
        if self.epochs is None and self.time_budget_s is None:
            raise ValueError("epochs may be left open (None) only with a time budget.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(
            self.augment, self.augment_intensity, self.augment_scale, self.augment_blur
        )

    @property
    def best_path(self) -> Path | None:
        return None if self.output_dir is None else Path(self.output_dir) / self.best_name

    @property
    def last_path(self) -> Path | None:
        return None if self.output_dir is None else Path(self.output_dir) / self.last_name
