"""Training: losses and the engine, a generator that yields progress events.

See docs/architecture.md, "Training" and "Long jobs: generators of events".
"""

from .engine import (
    CheckpointEvent,
    EpochEvent,
    Event,
    FinishedEvent,
    PreparingEvent,
    StepEvent,
    TrainingConfig,
    TrainingResult,
    default_learning_rates,
    train,
)
from .inputs import split_dataset
from .losses import segmentation_loss

__all__ = [
    "CheckpointEvent",
    "EpochEvent",
    "Event",
    "FinishedEvent",
    "PreparingEvent",
    "StepEvent",
    "TrainingConfig",
    "TrainingResult",
    "default_learning_rates",
    "segmentation_loss",
    "split_dataset",
    "train",
]
