"""The worker side of the training widget: a run's request, the job that runs the engine
like the CLI does, and what the widget records of a run (no Qt widgets here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.datasets import SliceDataset
from ..training.engine import FinishedEvent, TrainingConfig, TrainingResult
from ._common import Progress, _failsafe

PLUGIN = "napari-clip-guided-sam"


def default_output_dir() -> Path:
    """A new, timestamped run folder under the user's data directory."""
    from platformdirs import user_data_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(user_data_dir(PLUGIN)) / "training" / f"run-{stamp}"


def has_checkpoint(folder: Path) -> bool:
    names = (TrainingConfig.best_name, TrainingConfig.last_name)
    return any((folder / name).exists() for name in names)


def next_free_folder(folder: Path) -> Path:
    """`folder` with the first suffix -2, -3, ... that holds no checkpoint."""
    number = 2
    while has_checkpoint(candidate := folder.with_name(f"{folder.name}-{number}")):
        number += 1
    return candidate


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------------------- the job
@dataclass
class TrainingRequest:
    """What a run needs, gathered on the GUI thread (data already copied)."""

    preset: str
    dataset: SliceDataset
    config: TrainingConfig
    resume: bool = False
    description: str = ""


@dataclass
class Cancelled:
    """The run stopped on request; `step` is the last step done."""

    step: int


class TrainingJob:
    """The worker side of a run: builds the model like the CLI, then runs the engine.

    Cancelling sets a flag checked after every engine event. When the worker is aborted
    instead (napari quits workers when its window closes), `close()` runs in the worker
    thread and closes the generators. Either way `done` is set once the worker no longer
    trains, and the engine's generator has been closed.
    """

    def __init__(self, request: TrainingRequest):
        self.request = request
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.generator = _failsafe(self.run)

    def run(self) -> Generator[Any, None, None]:
        try:
            yield from self._run()
        finally:
            self.done.set()

    def close(self) -> None:
        """Close the (suspended) job generator; call from the thread that ran it."""
        self.generator.close()

    def _run(self) -> Generator[Any, None, None]:
        from ..model.factory import build_model
        from ..training.engine import train
        from ..training.inputs import split_dataset

        request, config = self.request, self.request.config
        yield Progress(f"Building the {request.preset} model…")
        model = build_model(request.preset, **_resume_base(request))
        train_data, val_data = split_dataset(request.dataset, config.val_fraction, config.seed)
        yield Progress(f"Training on {len(train_data)} sample(s), validating on {len(val_data)}…")
        events = train(
            model,
            train_data,
            val_data if len(val_data) else None,
            config,
            resume_from=config.output_dir if request.resume else None,
        )
        try:
            step = 0
            for event in events:
                step = getattr(event, "step", step)
                yield event
                if self.cancel_requested.is_set() and not isinstance(event, FinishedEvent):
                    yield Cancelled(step)
                    return
        finally:
            events.close()


def _resume_base(request: TrainingRequest) -> dict:
    """Base-weight arguments of `build_model` for a resumed run (as the CLI does)."""
    if not request.resume:
        return {}
    from ..model.factory import rebuild_arguments
    from ..training.state import load_state, resolve_resume_path

    info = load_state(resolve_resume_path(request.config.output_dir, TrainingConfig.last_name))
    return rebuild_arguments(info.info["base_weights"])


@dataclass
class RunRecord:
    """What the widget knows about the current or last run."""

    output: Path
    preset: str
    last: Path | None = None
    best: Path | None = None
    result: TrainingResult | None = None
    cancelled: bool = False
    failed: bool = False
    events: list = field(default_factory=list)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to use: the best one if validation ran, else the last one."""
        for path in (self.best, self.last):
            if path is not None and path.exists():
                return path
        return None


def iterate(generator: Generator) -> Generator:
    """A generator function over a ready generator (what `create_worker` accepts)."""
    yield from generator


def remove_run_files(folder: Path) -> None:
    """Remove an earlier run's checkpoints and state (the user chose to overwrite them)."""
    from ..training.state import state_path_for

    for name in (TrainingConfig.best_name, TrainingConfig.last_name):
        for path in (folder / name, state_path_for(folder / name)):
            path.unlink(missing_ok=True)
