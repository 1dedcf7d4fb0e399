"""What the training engine yields (`train` in training/engine.py) and the errors it raises.

See docs/architecture.md, "Long jobs: generators of events".
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PreparingEvent:
    """Before the first step: `done` of `total` samples read, converted and resized."""

    done: int
    total: int


@dataclass(frozen=True)
class StepEvent:
    """One optimiser step done; `step` counts steps of the whole run (1-based)."""

    epoch: int  # 1-based
    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    eta_s: float | None
    lr: float | None = None  # learning rate of the adapters and decoder in this step


@dataclass(frozen=True)
class EpochEvent:
    """An epoch ended (`complete` False when a step or time limit cut it short)."""

    epoch: int  # 1-based
    step: int
    train_loss: float | None
    val_metrics: Mapping[str, Any]
    complete: bool = True
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class CheckpointEvent:
    """A checkpoint file was written (atomically)."""

    path: Path
    kind: str  # "best" or "last"
    step: int
    epoch: int  # completed epochs


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run produced."""

    last_path: Path | None
    best_path: Path | None
    best_metric: float | None
    epochs_completed: int
    steps: int
    stopped: str  # "completed", "max_steps" or "time_budget"
    elapsed_s: float
    history: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FinishedEvent:
    result: TrainingResult


Event = PreparingEvent | StepEvent | EpochEvent | CheckpointEvent | FinishedEvent


class TrainingDivergedError(RuntimeError):
    """The loss or the weights stopped being finite numbers; nothing was saved from them."""


class CheckpointSaveError(OSError):
    """A checkpoint or the training state could not be written (disk full, read-only...)."""

    @classmethod
    def after(cls, path: Path, error: OSError, saved_step: int | None) -> CheckpointSaveError:
        """The error that stops a run whose file `path` failed with `error`; it says what
        is still on disk (the files of `saved_step`, if any) and what to do."""
        full = error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        reason = "the disk is full" if full else (error.strerror or str(error))
        fix = "free some space" if full else "make the folder writable"
        if saved_step is not None:
            kept = (
                f"the previous checkpoint and training state (step {saved_step}) are "
                f"complete: {fix}, then resume the run (--resume on the command line)"
            )
        else:
            kept = f"no checkpoint of this run was saved yet: {fix} and start it again"
        failure = cls(f"Cannot save {path.name} in {path.parent}: {reason}; {kept}.")
        failure.errno = error.errno
        return failure
