"""The worker side of the training widget: a run's request, the job that runs it through
`training.run` (the CLI's path), and what the widget records of a run (no Qt widgets here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.events import FinishedEvent, TrainingResult
from ..training.run import RunPlan
from ._common import Progress, failsafe

PLUGIN = "napari-clip-guided-sam"


def default_output_dir() -> Path:
    """A new, timestamped run folder under the user's data directory."""
    from platformdirs import user_data_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(user_data_dir(PLUGIN)) / "training" / f"run-{stamp}"


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
    """What a run needs, gathered on the GUI thread (data already copied and split)."""

    plan: RunPlan
    train_data: Sequence
    val_data: Sequence
    description: str = ""
    note: str | None = None  # why the run has no validation, if it has none


@dataclass
class Cancelled:
    """The run stopped on request; `step` is the last step done."""

    step: int


class TrainingJob:
    """The worker side of a run: the plan's model, split and engine, as the CLI runs them.

    Cancelling sets a flag checked after every engine event. When the worker is aborted
    instead (napari quits workers when its window closes), `close()` runs in the worker
    thread and closes the generators. Either way `done` is set once the worker no longer
    trains, and the engine's generator has been closed.
    """

    def __init__(self, request: TrainingRequest):
        self.request = request
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self.generator = failsafe(self.run)

    def run(self) -> Generator[Any, None, None]:
        try:
            yield from self._run()
        finally:
            self.done.set()

    def close(self) -> None:
        """Close the (suspended) job generator; call from the thread that ran it."""
        self.generator.close()

    def _run(self) -> Generator[Any, None, None]:
        request = self.request
        plan = request.plan
        yield Progress(f"Building the {plan.preset} model…")
        model = plan.build_model()
        events = plan.train(model, request.train_data, request.val_data)
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
