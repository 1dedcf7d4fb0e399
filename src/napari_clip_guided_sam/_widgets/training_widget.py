"""The training widget: fine-tune CLIP-Guided SAM on annotated layers or folders, in a worker.

Inputs are gathered and checked on the GUI thread (bad input: a notification, no training,
layers untouched); the annotated slices are copied, so painting during training changes
nothing. A run goes through the same path as `clip-guided-sam train` (the same
`SliceDataset`, and `training.run` for the output folder, settings, model and split), so the
GUI and the CLI write the same checkpoint for the same data and seed. The engine's generator
runs in a napari worker; cancelling (or closing the viewer) stops it at its next event, and
the last checkpoint on disk, written atomically, stays valid.

The parts: `TrainingSources` (what to train on), `TrainingSettings` (how), the run box and
its events (here), and `CheckpointPreview` (trying the result).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..inference.session import PredictorSettings
from ..training.engine import CheckpointEvent, FinishedEvent
from ..training.export import annotated_pairs, export_training_folder
from ..training.run import has_run, next_free_folder, plan_run
from ._common import (
    JobFailed,
    JobPanel,
    error_message,
    guarded,
    notify_error,
    notify_info,
    on_click,
)
from ._forms import refill
from ._shared_model import viewer_session
from ._training_job import (
    PLUGIN,
    Cancelled,
    RunRecord,
    TrainingJob,
    TrainingRequest,
    format_seconds,
    iterate,
)
from ._training_preview import CheckpointPreview
from ._training_probe import EventLoopProbe, ProbeSummary
from ._training_run import RunPanel
from ._training_settings import TrainingSettings
from ._training_sources import TrainingSources

if TYPE_CHECKING:
    import napari

__all__ = ["NEW_NAME", "TrainingWidget", "format_seconds"]

SEGMENT_WIDGET_NAME = "Segment (text + clicks)"
OVERWRITE, NEW_NAME, CANCEL = "overwrite", "new name", "cancel"
CLOSE_WAIT_S = 10.0  # how long closing the viewer waits for the current step to finish


# ---------------------------------------------------------------------------- the widget
class TrainingWidget(QWidget):
    """Dock widget: fine-tune on annotated (image, labels) layers or folders."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: TrainingJob | None = None
        self.worker = None
        self.run: RunRecord | None = None
        self.probe = EventLoopProbe(50, self)
        self.probe_summary: ProbeSummary | None = None
        self._task_id = None
        self._build()
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._update_layer_choices)
        self._update_layer_choices()
        self._watch_viewer_close()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.sources = TrainingSources(self.viewer)
        self.settings = TrainingSettings()
        self.run_panel = RunPanel(self.start_training, self.resume_training, self.cancel)
        layout = QVBoxLayout(self)
        for part in (self.sources, self.settings, self.run_panel, self._result_box()):
            layout.addWidget(part)
        layout.addStretch(1)

    def _result_box(self) -> QGroupBox:
        self.load_button = QPushButton("Load in segment widget")
        self.load_button.setToolTip("Use the newest checkpoint (best, else last) for segmenting")
        self.load_button.clicked.connect(on_click(self.load_into_segment_widget))
        self.preview_image_combo = QComboBox()
        self.preview_button = QPushButton("Preview on current slice")
        self.preview_button.setToolTip(
            "Segment the slice on screen with the newest checkpoint, into '<image> preview'"
        )
        self.preview_button.clicked.connect(on_click(self.preview_current_slice))
        self.export_button = QPushButton("Save annotated slices as training folder…")
        self.export_button.setToolTip(
            "images/ + labels/ + class_map.json, to train with `clip-guided-sam train`"
        )
        self.export_button.clicked.connect(on_click(self._export_dialog))
        self.preview_jobs = JobPanel()
        self.preview = CheckpointPreview(self.preview_jobs, viewer_session(self.viewer))
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.preview_image_combo, 1)
        preview_row.addWidget(self.preview_button)
        box = QGroupBox("Use the result")
        layout = QVBoxLayout(box)
        layout.addWidget(self.load_button)
        layout.addLayout(preview_row)
        layout.addWidget(self.preview_jobs)
        layout.addWidget(self.export_button)
        self._update_result_buttons()
        return box

    # ------------------------------------------------------------------ choices
    @guarded
    def _update_layer_choices(self, event=None) -> None:
        refill(self.preview_image_combo, self.sources.update_layer_choices())

    # ------------------------------------------------------------------ training
    @property
    def running(self) -> bool:
        return self.job is not None

    def start_training(self) -> bool:
        """Check the input and start a new run; False if refused (see notifications)."""
        if self._refuse_if_running():
            return False
        dataset, description = self.sources.dataset()
        output = self.settings.output()
        overwrite = False
        if has_run(output):
            answer = self._ask_existing_output(output)
            if answer == CANCEL:
                return False
            if answer == NEW_NAME:
                output = next_free_folder(output)
                self.settings.output_edit.setText(str(output))
            overwrite = answer == OVERWRITE
        plan = plan_run(
            output,
            preset=self.settings.preset,
            settings=self.settings.values(),
            overwrite=overwrite,
        )
        return self._start(TrainingRequest(plan, dataset, description))

    def resume_training(self) -> bool:
        """Continue the run saved in the output folder with its saved settings."""
        if self._refuse_if_running():
            return False
        output = self.settings.output()
        try:
            resumed = plan_run(output, resume=True)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Nothing to resume in {output}: {error_message(error)}. Choose the output "
                "folder of an interrupted run."
            ) from None
        self.settings.show_resumed(resumed.preset, resumed.config)
        dataset, description = self.sources.dataset()
        plan = plan_run(output, preset=resumed.preset, settings=self.settings.values(), resume=True)
        return self._start(TrainingRequest(plan, dataset, description))

    def _refuse_if_running(self) -> bool:
        if self.running:
            notify_info("Training is running; wait for it or press Cancel.")
            return True
        return False

    def _ask_existing_output(self, output: Path) -> str:
        """Ask what to do with a folder that holds checkpoints: overwrite, new name, cancel."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Output folder holds checkpoints")
        box.setText(f"{output} already holds checkpoints of a run.")
        box.setInformativeText(
            "Overwrite them, train into a new folder next to it, or cancel? (Resume continues "
            "that run instead.)"
        )
        overwrite = box.addButton("Overwrite", QMessageBox.ButtonRole.DestructiveRole)
        new = box.addButton("New folder", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(new)
        box.exec()
        clicked = box.clickedButton()
        return OVERWRITE if clicked is overwrite else NEW_NAME if clicked is new else CANCEL

    def _start(self, request: TrainingRequest) -> bool:
        job = TrainingJob(request)
        plan = request.plan
        self.run = RunRecord(plan.output, plan.preset)
        verb = "Resuming" if plan.resume else "Starting"
        self.run_panel.show_start(f"{verb}: {request.description} -> {plan.output}")
        worker = create_worker(iterate, job.generator, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(guarded(self._on_event))
        worker.finished.connect(functools.partial(self._on_finished, job))
        # Runs in the worker thread right after an abort, while the generator is suspended.
        worker.aborted.connect(job.close, Qt.ConnectionType.DirectConnection)
        self.job, self.worker = job, worker
        self.run_panel.set_running(True)
        self.probe.start()
        self._register_task()
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop after the current step; the last checkpoint written stays valid."""
        if self.job is not None and not self.job.cancel_requested.is_set():
            self.job.cancel_requested.set()
            self.run_panel.status_label.setText("Cancelling after the current step…")

    # ------------------------------------------------------------------ events
    def _on_event(self, event: Any) -> None:
        if _deleted(self):  # the viewer was closed; the worker's last events arrive late
            return
        run = self.run
        run.events.append(event)
        self.run_panel.show_event(event)
        if isinstance(event, CheckpointEvent):
            if event.kind == "best":
                run.best = Path(event.path)
            else:
                run.last = Path(event.path)
            self._update_result_buttons()
        elif isinstance(event, FinishedEvent):
            run.result = event.result
        elif isinstance(event, Cancelled):
            run.cancelled = True
        elif isinstance(event, JobFailed):
            run.failed = True
            notify_error(error_message(event.error))

    def _on_finished(self, job: TrainingJob, *args) -> None:
        if job is not self.job or _deleted(self):
            return
        self.job, self.worker = None, None
        self.probe_summary = self.probe.stop()
        self.run_panel.set_running(False)
        self._finish_task()
        self.run_panel.show_finished(self.run, self.probe_summary.describe())
        self._update_result_buttons()

    def _update_result_buttons(self) -> None:
        ready = self.run is not None and self.run.checkpoint is not None
        self.load_button.setEnabled(ready)
        self.preview_button.setEnabled(ready)

    # ------------------------------------------------------------------ closing the viewer
    def _watch_viewer_close(self) -> None:
        from qtpy.QtWidgets import QApplication

        QApplication.instance().aboutToQuit.connect(self.stop_and_wait)
        self.destroyed.connect(functools.partial(_stop_job, self))

    def _register_task(self) -> None:
        """Tell napari a run is going: closing the window asks first, then cancels it."""
        register = getattr(self.viewer.window, "_register_task_status", None)
        if register is None:
            return
        from napari.utils.task_status import Status

        self._task_id = register(
            PLUGIN, Status.BUSY, "training a model", cancel_callback=self.stop_and_wait
        )

    def _finish_task(self) -> None:
        update = getattr(self.viewer.window, "_update_task_status", None)
        if self._task_id is not None and update is not None:
            from napari.utils.task_status import Status

            update(self._task_id, Status.COMPLETED, "")
        self._task_id = None

    def stop_and_wait(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Cancel a run and wait (up to `timeout_s`) for its worker to stop; True if stopped."""
        job = self.job
        if job is None:
            return True
        job.cancel_requested.set()
        stopped = job.done.wait(timeout_s)
        if not _deleted(self):
            self.probe.stop()
        return stopped

    # ------------------------------------------------------------------ using the result
    def checkpoint(self) -> Path:
        path = self.run.checkpoint if self.run is not None else None
        if path is None:
            raise ValueError("No checkpoint yet: train first (one is written every epoch).")
        return path

    def load_into_segment_widget(self):
        """Open (or find) the segment widget and point it at the newest checkpoint."""
        path, preset = self.checkpoint(), self.run.preset
        widget = self._segment_widget()
        widget.load_checkpoint(path, preset)
        notify_info(f"The segment widget now uses {path.name} ({preset}).")
        return widget

    def _segment_widget(self):
        from ._segment import SegmentWidget

        for widget in self.viewer.window.dock_widgets.values():
            if isinstance(widget, SegmentWidget):
                return widget
        _, widget = self.viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_WIDGET_NAME)
        return widget

    def preview_current_slice(self) -> bool:
        """Segment the slice on screen with the newest checkpoint, into '<image> preview'."""
        path = self.checkpoint()
        image = self.sources.required_layer(self.preview_image_combo.currentText(), Image, "image")
        settings = PredictorSettings(
            preset=self.run.preset,
            checkpoint=str(path),
            device=self.settings.device_combo.currentText(),
            precision=self.settings.precision_combo.currentText(),
        )
        return self.preview.start(self.viewer, image, settings)

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the training data")
        if folder:
            self.export_training_folder(folder)

    def export_training_folder(self, folder: str | Path, overwrite: bool | None = None):
        """Save the annotated slices of the chosen pairs as a training folder for the CLI."""
        folder = Path(folder)
        pairs = annotated_pairs(self.sources.stacks())
        class_map = self.sources.class_map()
        if overwrite is None:
            overwrite = False
            if folder.exists() and any(folder.iterdir()):
                answer = QMessageBox.question(
                    self, "Folder not empty", f"{folder} is not empty. Overwrite it?"
                )
                if answer != QMessageBox.StandardButton.Yes:
                    return None
                overwrite = True
        result = export_training_folder(folder, pairs, class_map, overwrite=overwrite)
        notify_info(
            f"Saved {result.n_slices} annotated slice(s) to {folder}. Train on it with: "
            f"{result.cli_command()}"
        )
        return result


def _deleted(widget: QWidget) -> bool:
    """Whether Qt has deleted the widget (its Python wrapper outlives it)."""
    try:
        widget.objectName()
    except RuntimeError:
        return True
    return False


def _stop_job(widget: TrainingWidget, *args) -> None:
    """On the widget's destruction: make a running job stop at its next event."""
    job = getattr(widget, "job", None)
    if job is not None:
        job.cancel_requested.set()
