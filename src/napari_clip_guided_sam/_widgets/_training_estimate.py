"""The training widget's estimate: expected time per epoch, total time and peak memory of the
run as set up, measured before training starts (docs/training.md, "Estimating a run").

"Estimate time and memory" runs `training.estimate.iter_estimate`, the path of
`clip-guided-sam train --estimate`: a few real training steps of the chosen architecture
with random weights on synthetic images, projected onto the annotated slices and settings.
It runs in a background worker (progress, Cancel, errors in the message panel) and fills a
line of text under the button (hidden until then, to keep the Train button in view);
changing the preset clears that line, since the estimate was for another run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QPushButton, QVBoxLayout, QWidget

from ..training.estimate import Estimate, iter_estimate
from ._common import JobPanel, Progress, user_action
from ._messages import MessagePanel
from ._panels import text_label

CPU_FRIENDLY_PRESET = "paper_cpu"
CPU_FRIENDLY_TIP = (
    "CPU-friendly: the paper architecture set up to fine-tune on a laptop CPU in hours "
    "(512 px input, adapters in the last 3 SAM blocks, CLIP attention trained in its last 2, "
    "the frozen blocks computed once per image). Uses the official 'paper' weights. Press "
    "'Estimate time and memory' to see what a run costs on this computer."
)

# What `EstimateBox` needs of the widget: the run as set up, (model config, training config,
# training samples, validation samples); it raises ValueError on bad input.
RunInputs = Callable[[], tuple[Any, Any, int, int]]


def mark_cpu_friendly(preset_combo: QComboBox) -> None:
    """Name the CPU-friendly preset as such in the preset choice (its entry's tooltip)."""
    index = preset_combo.findText(CPU_FRIENDLY_PRESET)
    if index >= 0:
        preset_combo.setItemData(index, CPU_FRIENDLY_TIP, Qt.ItemDataRole.ToolTipRole)


class EstimateJob:
    """One measurement: `events()` runs it in the worker; `close()` (after the worker has
    finished, also when cancelled) ends the measuring run and frees its memory and files."""

    def __init__(self, model_config, config, n_train: int, n_val: int):
        self._steps = iter_estimate(model_config, config, n_train, n_val)

    def events(self) -> Generator[Progress | Estimate, None, None]:
        """`Progress` while measuring, then the `Estimate`."""
        while True:
            try:
                progress = next(self._steps)
            except StopIteration as stop:
                yield stop.value
                return
            yield Progress(f"Estimating: {progress.phase}…", progress.done, progress.total)

    def close(self) -> None:
        self._steps.close()


class EstimateBox(QWidget):
    """The estimate button, its progress and its result, between the settings and the run."""

    def __init__(
        self, messages: MessagePanel, run_inputs: RunInputs, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self._run_inputs = run_inputs
        self._job: EstimateJob | None = None
        self.estimate: Estimate | None = None
        self.button = QPushButton("Estimate time and memory")
        self.button.setToolTip(
            "Measure a few training steps of this preset and these settings on synthetic "
            "images (random weights, no download) and show the expected time per epoch, "
            "total time and peak memory of training on the annotated slices. Takes seconds "
            "for 'tiny', about half a minute for 'paper_cpu', a few minutes for 'paper'. "
            "Same as `clip-guided-sam train --estimate`."
        )
        self.button.clicked.connect(user_action(messages, self.start))
        self.result_label = text_label("", "The expected cost of the run as set up")
        self.result_label.setVisible(False)
        self.jobs = JobPanel(messages)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.jobs)
        layout.addWidget(self.result_label)

    @property
    def running(self) -> bool:
        return self.jobs.running

    def start(self) -> bool:
        """Measure the run as set up, in the background; False if one is measuring."""
        if self.running:
            return False
        model_config, config, n_train, n_val = self._run_inputs()
        job = EstimateJob(model_config, config, n_train, n_val)
        self._show_text("")
        started = self.jobs.start(job.events, on_event=self._show, on_done=self._done)
        if started:
            self._job = job
            self.button.setEnabled(False)
        return started

    def cancel(self) -> None:
        self.jobs.cancel()

    def clear(self) -> None:
        """Forget the estimate (the settings it was for changed)."""
        if not self.running:
            self._show_text("")

    def _show(self, event: Any) -> None:
        if isinstance(event, Estimate):
            self._show_text(describe(event), event)

    def _done(self, ok: bool) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.close()
        self.button.setEnabled(True)
        if ok:
            self.jobs.show_status("")  # the result line says it

    def _show_text(self, text: str, estimate: Estimate | None = None) -> None:
        self.estimate = estimate
        self.result_label.setText(text)
        self.result_label.setVisible(bool(text))


def describe(estimate: Estimate) -> str:
    """The estimate for people: time per epoch, total time and peak memory, with a warning
    when the peak exceeds this computer's memory."""
    text = (
        f"Expected: {estimate.summary()} ({estimate.epochs} epoch(s) of "
        f"{estimate.steps_per_epoch} step(s))."
    )
    total = _total_memory()
    if total and estimate.peak_bytes > total:
        text += (
            f" That is more than this computer's {total / 1e9:.0f} GB of memory: choose "
            f"'{CPU_FRIENDLY_PRESET}' (CPU-friendly) or train on a GPU machine (Export…)."
        )
    return text


def _total_memory() -> int | None:
    import psutil

    return int(psutil.virtual_memory().total)
