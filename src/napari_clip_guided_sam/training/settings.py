"""The ranges and choices of the training settings: one check for the CLI and the widget.

`config.TrainingConfig` runs :func:`check_settings` when it is made, so a setting that is not
a finite number in its range (``--lr nan``, ``--lr 1e6``, a negative weight decay, a zero
time budget...) or not one of its choices (``--schedule linear``) is refused before any
model is built, with a :class:`SettingError` that names the setting, its range or choices
and a typical value. No torch: the CLI's parser reads it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from ..model.runtime import CHECKPOINTING_CHOICES
from .recipe import SCHEDULES

__all__ = ["CHOICES", "LIMITS", "SettingError", "check_settings"]


class SettingError(ValueError):
    """A training setting is out of its range; `name` is the `TrainingConfig` field."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Limit:
    """The range of one setting; `high` None: no upper bound; `typical` for the message."""

    label: str
    integer: bool
    low: float
    high: float | None
    typical: str
    low_open: bool = False  # the lower bound itself is not allowed
    optional: bool = False  # None means "no limit"


# Learning rates above 1 only ever diverge with AdamW; weight decay is a fraction per step.
LIMITS: dict[str, Limit] = {
    # None: as many epochs as the time budget allows (TrainingConfig checks there is one).
    "epochs": Limit("the number of epochs", True, 1, 1_000_000, "10", optional=True),
    "lr": Limit("the learning rate", False, 0.0, 1.0, "5e-5 (tiny, tiny_448: 1e-3)"),
    "clip_lr": Limit("CLIP's learning rate", False, 0.0, 1.0, "1e-7 (tiny, tiny_448: 1e-4)"),
    "weight_decay": Limit("the weight decay", False, 0.0, 1.0, "1e-3"),
    "clip_weight_decay": Limit("CLIP's weight decay", False, 0.0, 1.0, "0"),
    "batch_size": Limit("the batch size", True, 1, 4096, "1"),
    "grad_accumulation": Limit("the gradient accumulation", True, 1, 100_000, "1"),
    "val_fraction": Limit("the validation fraction", False, 0.0, 0.9, "0.2"),
    "seed": Limit("the seed", True, 0, 2**32 - 1, "0"),
    "max_steps": Limit("the step limit", True, 1, None, "1000", optional=True),
    "time_budget_s": Limit(
        "the time budget in seconds", False, 0.0, None, "3600", low_open=True, optional=True
    ),
    "checkpoint_every": Limit("the checkpoint interval", True, 1, None, "100", optional=True),
    "cache_mb": Limit("the cache size in MB", True, 0, None, "2048"),
    "warmup": Limit("the warm-up share of the run", False, 0.0, 0.9, "0.03"),
    # CPU-friendly training (training.compute): the frozen prefix cache's memory and disk
    # (0: none), and the fixed augmentations each image cycles through (None: automatic).
    "prefix_cache_mb": Limit("the prefix cache's memory in MB", True, 0, None, "2048"),
    "prefix_cache_disk_mb": Limit("the prefix cache's disk space in MB", True, 0, None, "8192"),
    "augment_variants": Limit(
        "the fixed augmentations per image", True, 0, 10_000, "2", optional=True
    ),
}

# The settings that take one of a few names.
CHOICES: dict[str, tuple[str, ...]] = {
    "schedule": SCHEDULES,
    "activation_checkpointing": CHECKPOINTING_CHOICES,
}


def _range(limit: Limit) -> str:
    low = f"{limit.low:g}"
    if limit.high is None:
        return f"{'above' if limit.low_open else 'at least'} {low}"
    return f"from {low} to {limit.high:g}"


def check_value(name: str, value: Any) -> None:
    """Raise SettingError unless `value` is a valid value of the setting `name`."""
    limit = LIMITS[name]
    if value is None and limit.optional:
        return
    kind = "a whole number" if limit.integer else "a number"
    valid = isinstance(value, numbers.Integral if limit.integer else numbers.Real)
    valid = valid and not isinstance(value, bool) and math.isfinite(value)
    if valid:
        below = value <= limit.low if limit.low_open else value < limit.low
        valid = not below and (limit.high is None or value <= limit.high)
    if not valid:
        raise SettingError(
            name,
            f"{limit.label} ({name}) must be {kind} {_range(limit)}, got {value!r}; "
            f"a typical value is {limit.typical}.",
        )


def check_choice(name: str, value: Any) -> None:
    """Raise SettingError unless `value` is one of the choices of the setting `name`."""
    choices = CHOICES[name]
    if value not in choices:
        raise SettingError(name, f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def check_settings(settings: Any) -> None:
    """Check every numeric setting (see :data:`LIMITS`) and every named choice (see
    :data:`CHOICES`) of a `TrainingConfig`."""
    for name in LIMITS:
        check_value(name, getattr(settings, name))
    for name in CHOICES:
        check_choice(name, getattr(settings, name))
