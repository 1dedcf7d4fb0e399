"""The training widget's "Run" box: Train / Resume / Cancel, progress, ETA, live plot, status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from ..training.engine import EpochEvent, StepEvent
from ._common import Progress, on_click
from ._training_job import RunRecord, format_seconds
from ._training_plot import TrainingPlot


class RunPanel(QGroupBox):
    """Buttons that start and stop a run, and the display of its events."""

    def __init__(
        self, train: Callable[[], Any], resume: Callable[[], Any], cancel: Callable[[], Any]
    ):
        super().__init__("Run")
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(on_click(train))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the interrupted run saved in the output folder")
        self.resume_button.clicked.connect(on_click(resume))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop after the current step; the last checkpoint is kept")
        self.cancel_button.clicked.connect(on_click(cancel))
        buttons = QHBoxLayout()
        for button in (self.train_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta_label = QLabel("")
        self.status_label = QLabel("Choose an image and its labels, type a class name, Train.")
        self.status_label.setWordWrap(True)
        self.plot = TrainingPlot()
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.plot)
        layout.addWidget(self.status_label)

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.train_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)

    def show_start(self, message: str) -> None:
        self.plot.clear()
        self.progress.setRange(0, 0)
        self.eta_label.setText("")
        self.status_label.setText(message)

    def show_event(self, event: Any) -> None:
        """Progress, step and epoch events: status line, progress bar, ETA and plot."""
        if isinstance(event, Progress):
            self.status_label.setText(event.message)
        elif isinstance(event, StepEvent):
            self._show_step(event)
        elif isinstance(event, EpochEvent):
            miou = event.val_metrics.get("miou")
            if miou is not None:
                self.plot.add_miou(event.step, miou)
            loss = "-" if event.train_loss is None else f"{event.train_loss:.4f}"
            shown = "n/a" if miou is None else f"{miou:.4f}"
            self.status_label.setText(
                f"Epoch {event.epoch}: training loss {loss}, validation mIoU {shown}"
            )

    def _show_step(self, event: StepEvent) -> None:
        self.progress.setRange(0, event.total_steps)
        self.progress.setValue(event.step)
        self.eta_label.setText(
            f"Epoch {event.epoch}, step {event.step}/{event.total_steps}, loss "
            f"{event.loss:.4f}; elapsed {format_seconds(event.elapsed_s)}, "
            f"ETA {format_seconds(event.eta_s)}"
        )
        self.plot.add_loss(event.step, event.loss, event.total_steps)

    def show_finished(self, run: RunRecord, note: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if run.result is not None else 0)
        self.status_label.setText(summary(run) + "\n" + note)


def summary(run: RunRecord) -> str:
    """How a run ended, and which checkpoint it left."""
    checkpoint = run.checkpoint
    kept = f"checkpoint: {checkpoint}" if checkpoint else "no checkpoint was written yet"
    if run.failed:
        return f"Training failed; {kept}."
    if run.cancelled:
        return f"Cancelled; the last good {kept} (Resume continues the run)."
    result = run.result
    if result is None:
        return f"Stopped; {kept}."
    best = f", best validation mIoU {result.best_metric:.4f}" if result.best_metric else ""
    return f"Finished: {result.steps} step(s) in {format_seconds(result.elapsed_s)}{best}; {kept}."
