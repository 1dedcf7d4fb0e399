"""The training recipe of each preset: epochs, learning-rate schedule, augmentation and
sampling (docs/training.md, "The training recipe"). No torch: the CLI's parser reads it.

The pretrained presets follow the paper: a constant learning rate, flips and quarter turns,
plain shuffling, 10 epochs. `tiny` and `tiny_448`, trained from random weights on a CPU, use
a warm-up and cosine decay over 30 epochs (or over the time budget when no epoch count is
given, the budget alone then setting the run's length). Intensity, scale and blur jitter and
balanced sampling are options for every preset; in our short `tiny` pilots on DSB2018 they
slowed learning (docs/training.md), so no preset turns them on by default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..model.config import FROM_SCRATCH_PRESETS

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_RECIPES",
    "LEGACY_SETTINGS",
    "PAPER_RECIPE",
    "AUGMENTATION_FIELDS",
    "SCHEDULES",
    "augmentation_names",
    "augmentation_settings",
    "default_recipe",
    "describe_augmentation",
    "lr_factor",
]

SCHEDULES = ("constant", "cosine")
# The switchable augmentations (`training.inputs.Augmentation`): name -> TrainingConfig field.
AUGMENTATION_FIELDS = {
    "flips": "augment",
    "intensity": "augment_intensity",
    "scale": "augment_scale",
    "blur": "augment_blur",
}
AUGMENTATIONS = tuple(AUGMENTATION_FIELDS)

PAPER_RECIPE: dict[str, Any] = {
    "epochs": 10,
    "schedule": "constant",
    "augment": True,
    "augment_intensity": False,
    "augment_scale": False,
    "augment_blur": False,
    "balance": False,
}
FROM_SCRATCH_RECIPE: dict[str, Any] = {**PAPER_RECIPE, "epochs": 30, "schedule": "cosine"}
DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    name: FROM_SCRATCH_RECIPE for name in FROM_SCRATCH_PRESETS
}
# What a run saved before a setting existed used (for resuming it exactly).
LEGACY_SETTINGS: dict[str, Any] = {**PAPER_RECIPE, "warmup": 0.03, "augment_variants": 0}


def default_recipe(preset: str) -> dict[str, Any]:
    """`TrainingConfig` fields of a preset's recipe (learning rates: see the engine)."""
    return dict(DEFAULT_RECIPES.get(preset, PAPER_RECIPE))


def lr_factor(progress: float, schedule: str, warmup: float) -> float:
    """Learning-rate multiplier at `progress` (0 to 1) of the run.

    "constant": 1. "cosine": a linear warm-up over the first `warmup` of the run (from 1/100
    of the rate), then a half cosine from 1 down to 0 at the end.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"Unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}.")
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return 0.01 + 0.99 * progress / warmup
    span = max(1.0 - warmup, 1e-12)
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / span))


def augmentation_settings(names: Iterable[str]) -> dict[str, bool]:
    """The `TrainingConfig` fields that switch on exactly the augmentations `names`.

    Raises:
        ValueError: a name is not one of `AUGMENTATIONS`.
    """
    names = set(names)
    unknown = names - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(AUGMENTATIONS)}"
        )
    return {field: name in names for name, field in AUGMENTATION_FIELDS.items()}


def augmentation_names(settings: Any) -> tuple[str, ...]:
    """The augmentations switched on in `settings`: a `TrainingConfig`, or a mapping of its
    fields such as a preset's recipe."""
    if isinstance(settings, Mapping):
        return tuple(name for name, key in AUGMENTATION_FIELDS.items() if settings[key])
    return tuple(name for name, key in AUGMENTATION_FIELDS.items() if getattr(settings, key))


def describe_augmentation(config: Any) -> str:
    """The enabled augmentations of a `TrainingConfig`, e.g. "flips,intensity" or "none"."""
    return ",".join(augmentation_names(config)) or "none"
