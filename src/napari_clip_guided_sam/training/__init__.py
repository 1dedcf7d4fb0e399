"""Training: its settings, losses and the engine, a generator that yields progress events.

See docs/architecture.md, "Training" and "Long jobs: generators of events". The names below
load the engine (and torch) on first use, so `training.recipe` (the presets' training
recipes, read by the CLI's parser) imports without torch.
"""

from importlib import import_module

_NAMES = {
    "CheckpointEvent": "events",
    "EpochEvent": "events",
    "Event": "events",
    "FinishedEvent": "events",
    "PreparingEvent": "events",
    "StepEvent": "events",
    "TrainingConfig": "config",
    "TrainingResult": "events",
    "default_learning_rates": "config",
    "train": "engine",
    "split_dataset": "inputs",
    "segmentation_loss": "losses",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
