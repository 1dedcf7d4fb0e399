"""The training widget's "Run" box: Train / Resume / Cancel, progress, what the run is doing
(building the model, preparing the slices, the current step), elapsed time, time left,
the live plot and how the run ended."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from ..training.events import EpochEvent, PreparingEvent, StepEvent
from ._common import Progress
from ._panels import text_label
from ._training_job import RunRecord, format_seconds
from ._training_plot import TrainingPlot

STEADY_STEPS = 4  # steps timed (after the first) before a time left is shown
RATE_WINDOW = 10  # the time left follows the rate of this many recent steps


class TimeLeft:
    """Time left in a run, from the rate of its recent steps, once that rate is steady.

    The first step of a session carries one-off costs (memory, caches), and early steps
    vary, so no estimate is given until `STEADY_STEPS` steps after the first have been
    timed; then the rate is that of the last `RATE_WINDOW` steps.
    """

    def __init__(self) -> None:
        self._times: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW + 1)

    def reset(self) -> None:
        self._times.clear()

    def add(self, step: int, elapsed_s: float) -> None:
        """A step finished at `elapsed_s` seconds of training."""
        self._times.append((step, elapsed_s))

    def seconds(self, total_steps: int, budget_left_s: float | None = None) -> float | None:
        """Seconds to the end (None until the rate is steady)."""
        if len(self._times) < STEADY_STEPS + 1:
            return None
        (first_step, first_time), (last_step, last_time) = self._times[0], self._times[-1]
        per_step = (last_time - first_time) / (last_step - first_step)
        left = per_step * max(0, total_steps - last_step)
        if budget_left_s is not None:
            left = min(left, max(0.0, budget_left_s))
        return left


class RunPanel(QGroupBox):
    """Buttons that start and stop a run, and the display of its events."""

    def __init__(
        self,
        train: Callable[..., Any],
        resume: Callable[..., Any],
        cancel: Callable[..., Any],
    ):
        super().__init__("Run")
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Start fine-tuning on the training data above")
        self.train_button.clicked.connect(train)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            "Continue the interrupted run saved in the 'Save to' folder, with its settings"
        )
        self.resume_button.clicked.connect(resume)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip(
            "Stop after the current step; the last checkpoint written stays valid (Resume "
            "continues from it)"
        )
        self.cancel_button.clicked.connect(cancel)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setToolTip("Slices prepared, then training steps done")
        self.phase_label = text_label("", "What the run is doing now")
        self.time_label = text_label(
            "",
            "Time since Train was pressed, and the time left once the steps run at a steady "
            "rate (from the last few steps)",
        )
        self.status_label = text_label(
            "Choose an image and its labels, type a class name, Train.",
            "How the run goes or ended, and the checkpoint it left",
        )
        self.plot = TrainingPlot()
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.time_label)
        layout.addWidget(self.plot)
        layout.addWidget(self.status_label)
        self.result_row = QHBoxLayout()  # the widget's buttons that use the result
        layout.addLayout(self.result_row)
        for label in (self.phase_label, self.time_label):
            label.setVisible(False)
        self.plot.setVisible(False)  # shown from the first run on
        self.time_left = TimeLeft()
        self._started = 0.0
        self._budget_s: float | None = None

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.train_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)

    def show_start(self, message: str, time_budget_s: float | None = None) -> None:
        self.plot.clear()
        self.time_left.reset()
        self._started = time.monotonic()
        self._budget_s = time_budget_s
        self.progress.setRange(0, 0)
        self.plot.setVisible(True)
        self._set(self.phase_label, "Starting…")
        self._set(self.time_label, "")
        self.status_label.setText(message)

    @staticmethod
    def _set(label: QLabel, text: str) -> None:
        """Show `text`, hiding the label when there is none (the panel stays short)."""
        label.setText(text)
        label.setVisible(bool(text))

    def show_event(self, event: Any) -> None:
        """What the run is doing: phase, progress bar, times, plot and status line."""
        if isinstance(event, Progress):
            self._set(self.phase_label, event.message)
        elif isinstance(event, PreparingEvent):
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.done)
            self._set(
                self.phase_label, f"Preparing {event.total} slice(s): {event.done}/{event.total}"
            )
            self._show_times(None)
        elif isinstance(event, StepEvent):
            self._show_step(event)
        elif isinstance(event, EpochEvent):
            miou = event.val_metrics.get("miou")
            if miou is not None:
                self.plot.add_miou(event.step, miou)
            loss = "-" if event.train_loss is None else f"{event.train_loss:.4f}"
            shown = "not measured" if miou is None else f"{miou:.3f}"
            self.status_label.setText(
                f"Epoch {event.epoch} done: training loss {loss}, validation mIoU {shown}"
            )

    def _show_step(self, event: StepEvent) -> None:
        self.progress.setRange(0, event.total_steps)
        self.progress.setValue(event.step)
        self._set(
            self.phase_label,
            f"Training: epoch {event.epoch}, step {event.step} of {event.total_steps}, "
            f"loss {event.loss:.4f}",
        )
        self.time_left.add(event.step, event.elapsed_s)
        budget_left = None if self._budget_s is None else self._budget_s - event.elapsed_s
        self._show_times(self.time_left.seconds(event.total_steps, budget_left))
        self.plot.add_loss(event.step, event.loss, event.total_steps)

    def _show_times(self, left_s: float | None) -> None:
        text = f"Elapsed {format_seconds(time.monotonic() - self._started)}"
        if left_s is not None:
            text += f", about {format_seconds(left_s)} left"
        if self._budget_s is not None:
            text += f" (limit: {format_seconds(self._budget_s)} of training)"
        self._set(self.time_label, text)

    def show_finished(self, run: RunRecord) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if run.result is not None else 0)
        self._set(self.phase_label, "")
        self._set(self.time_label, "")
        self.status_label.setText(summary(run))


def summary(run: RunRecord) -> str:
    """How a run ended, and which checkpoint it left."""
    checkpoint = run.checkpoint
    kept = (
        f"checkpoint: {checkpoint.name} (in the 'Save to' folder)"
        if checkpoint
        else "no checkpoint was written yet"
    )
    if run.failed:
        return f"Training failed (see the message below); {kept}."
    if run.cancelled:
        return f"Cancelled; the last good {kept} (Resume continues the run)."
    result = run.result
    if result is None:
        return f"Stopped; {kept}."
    reason = {"time_budget": " (time limit reached)", "max_steps": " (step limit reached)"}
    best = f", best validation mIoU {result.best_metric:.4f}" if result.best_metric else ""
    return (
        f"Finished{reason.get(result.stopped, '')}: {result.steps} step(s) in "
        f"{format_seconds(result.elapsed_s)}{best}; {kept}."
    )
