"""Training: losses and the engine, a generator that yields progress events.

See docs/architecture.md, "Training" and "Long jobs: generators of events". The names below
load the engine (and torch) on first use, so `training.recipe` (the presets' training
recipes, read by the CLI's parser) imports without torch.
"""

from importlib import import_module

_NAMES = {
    "CheckpointEvent": "engine",
    "EpochEvent": "engine",
    "Event": "engine",
    "FinishedEvent": "engine",
    "PreparingEvent": "engine",
    "StepEvent": "engine",
    "TrainingConfig": "engine",
    "TrainingResult": "engine",
    "default_learning_rates": "engine",
    "train": "engine",
    "split_dataset": "inputs",
    "segmentation_loss": "losses",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
