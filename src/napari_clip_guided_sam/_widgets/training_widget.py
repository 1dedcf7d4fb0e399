"""The training widget: fine-tune CLIP-Guided SAM on annotated layers or folders, in a worker.

Inputs are gathered and checked on the GUI thread (bad input: a notification and a message
in the panel, no training, layers untouched); the annotated slices are copied, so painting
during training changes nothing. A run goes through the same path as `clip-guided-sam
train` (the same `SliceDataset`, and `training.run` for the output folder, settings,
model, split and the no-validation note), so the GUI and the CLI write the same checkpoint
for the same data and seed. The engine's generator runs in a napari worker; cancelling (or
closing the viewer) stops it at its next event, and the last checkpoint on disk, written
atomically, stays valid.

Closing the window while a run goes: napari's `create_worker` registers every worker with
the window's task list, so napari asks first and then quits the worker; its `aborted` signal
closes the job in the worker thread. The plugin itself uses only public napari API.

The parts: `TrainingSources` (what to train on), `TrainingSettings` (how), `EstimateBox`
(the run's expected time and memory, measured before it starts), the run box and its
events (`RunPanel`), `CheckpointPreview` (trying the result), the `MessagePanel` and a
remembered Advanced section.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QMessageBox,
    QPushButton,
    QWidget,
)

from ..inference.session import PredictorSettings
from ..model.preprocess import validate_rgb
from ..model.weights import MissingWeightsError
from ..training.events import CheckpointEvent, FinishedEvent
from ..training.export import annotated_pairs, export_training_folder
from ..training.run import has_run, next_free_folder, plan_run
from ._common import (
    JobFailed,
    JobPanel,
    error_message,
    guarded,
    notify_error,
    notify_info,
    user_action,
)
from ._layers import is_plugin_output
from ._messages import MessagePanel
from ._panels import AdvancedSection, DockPanel
from ._shared_model import viewer_session
from ._training_estimate import EstimateBox, mark_cpu_friendly
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
SETTINGS_KEY = "training_widget"
OVERWRITE, NEW_NAME, CANCEL = "overwrite", "new name", "cancel"
CLOSE_WAIT_S = 10.0  # how long quitting napari waits for the current step to finish


# ---------------------------------------------------------------------------- the widget
class TrainingWidget(DockPanel):
    """Dock widget: fine-tune on annotated (image, labels) layers or folders."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: TrainingJob | None = None
        self.worker = None
        self.run: RunRecord | None = None
        self.probe = EventLoopProbe(50, self)
        self.probe_summary: ProbeSummary | None = None
        self._build()
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._update_layer_choices)
        self._update_layer_choices()
        self._watch_viewer_close()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.messages = MessagePanel()
        self.sources = TrainingSources(self.viewer)
        self.sources.add_pair_button.clicked.connect(
            user_action(self.messages, self.sources.add_pair)
        )
        self.settings = TrainingSettings()
        mark_cpu_friendly(self.settings.preset_combo)
        self.estimate_box = EstimateBox(self.messages, self._estimate_inputs)
        self.settings.preset_combo.currentTextChanged.connect(
            guarded(lambda *_: self.estimate_box.clear())
        )
        self.run_panel = RunPanel(
            user_action(self.messages, self.start_training),
            user_action(self.messages, self.resume_training),
            user_action(self.messages, self.cancel),
        )
        self.messages.add_remedy(
            MissingWeightsError,
            "Use the tiny preset for now",
            self._use_tiny,
            "Switch to 'tiny' (random weights, no download) to try the workflow",
        )
        self.advanced = AdvancedSection(SETTINGS_KEY)
        self.sources.add_advanced_rows(self.advanced)
        self.settings.add_advanced_rows(self.advanced)
        self._result_buttons()
        layout = self.content_layout
        parts = (self.sources, self.settings, self.estimate_box, self.run_panel)
        for part in (*parts, self.messages, self.advanced):
            layout.addWidget(part)
        self.finish()

    def _result_buttons(self) -> None:
        """Load / Preview / Export, under the run (the result is used where it appears)."""
        self.load_button = QPushButton("Load in segment widget")
        self.load_button.setToolTip(
            "Open the segment widget with the newest checkpoint (best, else last), its "
            "preset and its classes"
        )
        self.load_button.clicked.connect(user_action(self.messages, self.load_into_segment_widget))
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip(
            "Segment the slice on screen with the newest checkpoint, into '<image> preview' "
            "(the selected image layer, else the training image; your layers never change)"
        )
        self.preview_button.clicked.connect(user_action(self.messages, self.preview_current_slice))
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Save the annotated slices as a training folder (images/, labels/, "
            "class_map.json) to train with `clip-guided-sam train`, e.g. on a GPU machine"
        )
        self.export_button.clicked.connect(user_action(self.messages, self._export_dialog))
        self.preview_jobs = JobPanel(self.messages)
        self.preview = CheckpointPreview(self.preview_jobs, viewer_session(self.viewer))
        row = self.run_panel.result_row
        row.addWidget(self.load_button, 1)
        row.addWidget(self.preview_button)
        row.addWidget(self.export_button)
        self.run_panel.layout().addWidget(self.preview_jobs)
        self._update_result_buttons()

    def _use_tiny(self) -> None:
        self.settings.preset_combo.setCurrentText("tiny")
        notify_info("Preset 'tiny': random weights, to try the workflow (not for results).")

    # ------------------------------------------------------------------ choices
    @guarded
    def _update_layer_choices(self, event=None) -> None:
        self.sources.update_layer_choices()

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
            sam_weights=self.settings.sam_weights,
        )
        return self._start(self._request(plan, dataset, description))

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
        plan = plan_run(
            output,
            preset=resumed.preset,
            settings=self.settings.values(),
            resume=True,
            sam_weights=self.settings.sam_weights,
        )
        return self._start(self._request(plan, dataset, description))

    def _request(self, plan, dataset, description: str) -> TrainingRequest:
        """The run's request, with its split; says before training when there is no
        validation and why (the rule the CLI prints)."""
        if len(dataset):  # the model's input check, before anything starts
            validate_rgb(dataset[0].image)
        train_data, val_data = plan.split(dataset)
        note = plan.validation_note(dataset, val_data)
        description += f" ({len(train_data)} to train on, {len(val_data)} to validate)"
        return TrainingRequest(plan, train_data, val_data, description, note)

    def _refuse_if_running(self) -> bool:
        if self.running:
            notify_info("Training is running; wait for it or press Cancel.")
            return True
        if self.estimate_box.running:
            notify_info("The estimate is measuring; wait for it or press its Cancel.")
            return True
        return False

    def _estimate_inputs(self):
        """The run Train would start, for the estimate: (model config, training config,
        training samples, validation samples). Nothing is written."""
        if self.running:
            raise ValueError("Training is running: estimate before training, or cancel it.")
        dataset, _ = self.sources.dataset()
        plan = plan_run(
            self.settings.output(),
            preset=self.settings.preset,
            settings=self.settings.values(),
            overwrite=True,  # only planned: an existing run is not touched
        )
        train_data, val_data = plan.split(dataset)
        return plan.model_config, plan.config, len(train_data), len(val_data)

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
        self.run_panel.show_start(f"{verb}: {request.description}", plan.config.time_budget_s)
        if request.note:
            self.messages.show_note(request.note)
        worker = create_worker(iterate, job.generator, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(guarded(self._on_event))
        worker.finished.connect(functools.partial(self._on_finished, job))
        # Runs in the worker thread right after an abort, while the generator is suspended.
        worker.aborted.connect(job.close, Qt.ConnectionType.DirectConnection)
        self.job, self.worker = job, worker
        self.run_panel.set_running(True)
        self.probe.start()
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
            self.messages.show_error(event.error)

    def _on_finished(self, job: TrainingJob, *args) -> None:
        if job is not self.job or _deleted(self):
            return
        self.job, self.worker = None, None
        self.probe_summary = self.probe.stop()
        self.run_panel.set_running(False)
        self.run_panel.show_finished(self.run)
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
        """Show the segment widget (tabbed with this one, or raised if it is open) with the
        newest checkpoint, its preset and its classes."""
        path = self.checkpoint()
        widget = self._segment_widget()
        widget.load_checkpoint(path)
        if not widget.sam_weights_edit.text():
            widget.sam_weights_edit.setText(self.settings.sam_weights_edit.text())
        dock = widget.parent()  # napari's dock around the widget (public: `dock_widgets` doc)
        if dock is not None:
            dock.show()
            dock.raise_()
        notify_info(f"The segment widget now uses {path.name} ({widget.model.preset}).")
        return widget

    def _segment_widget(self):
        from ._segment import SegmentWidget

        for widget in self.viewer.window.dock_widgets.values():
            if isinstance(widget, SegmentWidget):
                return widget
        _, widget = self.viewer.window.add_plugin_dock_widget(
            PLUGIN, SEGMENT_WIDGET_NAME, tabify=True
        )
        return widget

    def preview_current_slice(self) -> bool:
        """Segment the slice on screen with the newest checkpoint, into '<image> preview'."""
        path = self.checkpoint()
        image = self._preview_image()
        settings = PredictorSettings(
            preset=self.run.preset,
            checkpoint=str(path),
            device=self.settings.device_combo.currentText(),
            precision=self.settings.precision_combo.currentText(),
            sam_weights=self.settings.sam_weights,
        )
        return self.preview.start(self.viewer, image, settings)

    def _preview_image(self) -> Image:
        """The selected image layer, else the training image layer."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and not is_plugin_output(active):
            return active
        return self.sources.required_layer(self.sources.image_combo.currentText(), Image, "image")

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
