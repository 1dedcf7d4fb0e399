"""The training widget: fine-tune CLIP-Guided SAM on annotated layers or folders, in a worker.

Inputs are gathered and checked on the GUI thread (bad input: a notification, no training,
layers untouched); the annotated slices are copied, so painting during training changes
nothing. The data go through the same code path as `clip-guided-sam train` (the same
`SliceDataset`, split, model builder and `TrainingConfig` defaults), so the GUI and the CLI
write the same checkpoint for the same data and seed. The engine's generator runs in a napari
worker; cancelling (or closing the viewer) stops it at its next event, and the last
checkpoint on disk, written atomically, stays valid.
"""

from __future__ import annotations

import functools
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..data.datasets import ClassMap, SliceDataset, parse_class_map
from ..inference.session import PredictorSession, PredictorSettings
from ..model.config import PRESETS
from ..training.engine import (
    CheckpointEvent,
    EpochEvent,
    FinishedEvent,
    StepEvent,
    TrainingConfig,
    default_learning_rates,
)
from ..training.export import (
    AnnotatedStack,
    annotated_pairs,
    export_training_folder,
    training_dataset,
)
from ._common import (
    DEVICES,
    PRECISIONS,
    JobFailed,
    JobPanel,
    Progress,
    error_message,
    guarded,
    notify_error,
    notify_info,
    on_click,
)
from ._layers import MARKER, ImageGeometry, class_features, free_name, write_labels_slice
from ._training_job import (
    PLUGIN,
    Cancelled,
    RunRecord,
    TrainingJob,
    TrainingRequest,
    default_output_dir,
    format_seconds,
    has_checkpoint,
    iterate,
    next_free_folder,
    remove_run_files,
)
from ._training_plot import TrainingPlot
from ._training_probe import EventLoopProbe, ProbeSummary

if TYPE_CHECKING:
    import napari

SEGMENT_WIDGET_NAME = "Segment (text + clicks)"
LAYERS, FOLDERS = "layers in the viewer", "folders on disk"
MODES = {"text only (CLIP-sampled prompts)": "text", "manual (ground-truth points)": "manual"}
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
        self.preview_session = PredictorSession()
        self._preview_stamp: tuple | None = None
        self._lr_preset = ""
        self._task_id = None
        self._watched_labels: weakref.WeakSet = weakref.WeakSet()
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(guarded(self._update_count))
        self._build()
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._update_layer_choices)
        self._update_layer_choices()
        self._on_preset_changed(self.preset_combo.currentText())
        self._watch_viewer_close()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        for box in (self._data_box(), self._class_box(), self._settings_box()):
            layout.addWidget(box)
        layout.addWidget(self._run_box())
        layout.addWidget(self._result_box())
        layout.addStretch(1)

    def _data_box(self) -> QGroupBox:
        self.source_combo = QComboBox()
        self.source_combo.addItems([LAYERS, FOLDERS])
        self.source_combo.currentTextChanged.connect(guarded(self._on_source_changed))
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        for combo in (self.image_combo, self.labels_combo):
            combo.currentIndexChanged.connect(self._schedule_count)
        self.add_pair_button = QPushButton("Add pair")
        self.add_pair_button.setToolTip("Train on several (image, labels) pairs at once")
        self.add_pair_button.clicked.connect(on_click(self.add_pair))
        self.remove_pair_button = QPushButton("Remove")
        self.remove_pair_button.clicked.connect(on_click(self._remove_pair))
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(70)
        self.pair_list.setToolTip("Pairs to train on; empty: the pair chosen above")
        self.count_label = QLabel("")
        self.count_label.setWordWrap(True)
        pair_buttons = QHBoxLayout()
        pair_buttons.addWidget(self.add_pair_button)
        pair_buttons.addWidget(self.remove_pair_button)
        self.images_dir_edit, images_row = _path_row("images folder", self._browse_dir)
        self.labels_dir_edit, labels_row = _path_row("label images, same names", self._browse_dir)
        self.label_suffix_edit = QLineEdit()
        self.label_suffix_edit.setPlaceholderText("e.g. _labels for a.png <-> a_labels.tif")
        self.layers_panel = _form_panel(
            [
                ("Image layer", self.image_combo),
                ("Labels layer", self.labels_combo),
                ("", pair_buttons),
                ("Pairs", self.pair_list),
                ("", self.count_label),
            ]
        )
        self.folders_panel = _form_panel(
            [
                ("Images folder", images_row),
                ("Labels folder", labels_row),
                ("Label suffix", self.label_suffix_edit),
            ]
        )
        box = QGroupBox("Training data")
        layout = QVBoxLayout(box)
        source_row = QHBoxLayout()
        source_row.addWidget(QLabel("Source"))
        source_row.addWidget(self.source_combo, 1)
        layout.addLayout(source_row)
        layout.addWidget(self.layers_panel)
        layout.addWidget(self.folders_panel)
        self._on_source_changed(LAYERS)
        return box

    def _class_box(self) -> QGroupBox:
        self.one_class_check = QCheckBox("All labels are one class (e.g. instance labels)")
        self.one_class_check.setChecked(True)
        self.one_class_check.toggled.connect(guarded(self._on_one_class_toggled))
        self.class_name_edit = QLineEdit()
        self.class_name_edit.setPlaceholderText("e.g. nucleus")
        self.class_map_edit = QLineEdit()
        self.class_map_edit.setPlaceholderText("label value = class, e.g. 1=nucleus, 2=cell")
        self.class_map_edit.setEnabled(False)
        box = QGroupBox("Classes")
        form = QFormLayout(box)
        form.addRow("", self.one_class_check)
        form.addRow("Class name", self.class_name_edit)
        form.addRow("Class map", self.class_map_edit)
        return box

    def _settings_box(self) -> QGroupBox:
        defaults = TrainingConfig()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip(
            "Text only: train with prompt points sampled from CLIP's similarity map, as the "
            "model is used when you segment by class name. Manual: points from the labels."
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.currentTextChanged.connect(guarded(self._on_preset_changed))
        self.epochs_spin = _spin(defaults.epochs, 1, 100_000, "Passes over the training data")
        self.lr_edit = QLineEdit()
        self.lr_edit.setToolTip("Learning rate of adapters, mask decoder, prompt encoder")
        self.clip_lr_edit = QLineEdit()
        self.clip_lr_edit.setToolTip("Learning rate of CLIP's trainable attention")
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.0, 0.9)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(defaults.val_fraction)
        self.val_spin.setToolTip("Fraction of annotated slices held out to validate each epoch")
        self.seed_spin = _spin(defaults.seed, 0, 2**31 - 1, "Random seed (same seed, same run)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        self.max_steps_spin = _spin(0, 0, 10_000_000, "Stop after this many steps (0: no limit)")
        self.checkpoint_every_spin = _spin(
            0, 0, 1_000_000, "Also save the last checkpoint every N steps (0: at epoch ends)"
        )
        self.output_edit, output_row = _path_row("checkpoint folder", self._browse_output)
        self.output_edit.setText(str(default_output_dir()))
        box = QGroupBox("Settings")
        form = QFormLayout(box)
        for label, widget in (
            ("Mode", self.mode_combo),
            ("Preset", self.preset_combo),
            ("Epochs", self.epochs_spin),
            ("Learning rate", self.lr_edit),
            ("CLIP learning rate", self.clip_lr_edit),
            ("Validation fraction", self.val_spin),
            ("Seed", self.seed_spin),
            ("Device", self.device_combo),
            ("Precision", self.precision_combo),
            ("Max steps", self.max_steps_spin),
            ("Save every (steps)", self.checkpoint_every_spin),
            ("Output folder", output_row),
        ):
            form.addRow(label, widget)
        return box

    def _run_box(self) -> QGroupBox:
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(on_click(self.start_training))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the interrupted run saved in the output folder")
        self.resume_button.clicked.connect(on_click(self.resume_training))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop after the current step; the last checkpoint is kept")
        self.cancel_button.clicked.connect(on_click(self.cancel))
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
        box = QGroupBox("Run")
        layout = QVBoxLayout(box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.plot)
        layout.addWidget(self.status_label)
        return box

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
        images = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Labels)]
        _refill(self.image_combo, images)
        _refill(self.labels_combo, labels)
        _refill(self.preview_image_combo, images)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer not in self._watched_labels:
                layer.events.paint.connect(self._schedule_count)
                layer.events.data.connect(self._schedule_count)
                self._watched_labels.add(layer)
        self._count_timer.start()

    def _on_source_changed(self, source: str) -> None:
        self.layers_panel.setVisible(source == LAYERS)
        self.folders_panel.setVisible(source != LAYERS)

    def _browse_dir(self, edit: QLineEdit) -> None:
        _browse_dir_dialog(self, edit, "Choose a folder")

    def _browse_output(self, edit: QLineEdit) -> None:
        _browse_dir_dialog(self, edit, "Folder for the checkpoints")

    def _schedule_count(self, *args) -> None:
        try:
            self._count_timer.start()
        except RuntimeError:  # the widget was deleted; the layer outlived it
            pass

    def _on_one_class_toggled(self, checked: bool) -> None:
        self.class_name_edit.setEnabled(checked)
        self.class_map_edit.setEnabled(not checked)

    def _on_preset_changed(self, preset: str) -> None:
        """Fill the learning rates with the preset's defaults unless the user changed them."""
        if not preset:
            return
        old = default_learning_rates(self._lr_preset) if self._lr_preset else None
        current = (self.lr_edit.text(), self.clip_lr_edit.text())
        if old is None or current == (f"{old[0]:g}", f"{old[1]:g}"):
            lr, clip_lr = default_learning_rates(preset)
            self.lr_edit.setText(f"{lr:g}")
            self.clip_lr_edit.setText(f"{clip_lr:g}")
        self._lr_preset = preset

    def add_pair(self) -> None:
        """Add the chosen (image, labels) pair to the list of pairs (checked first)."""
        stack = self._stack(self.image_combo.currentText(), self.labels_combo.currentText())
        stack.check()
        text = f"{self.image_combo.currentText()}  ←  {self.labels_combo.currentText()}"
        if text not in [self.pair_list.item(i).text() for i in range(self.pair_list.count())]:
            self.pair_list.addItem(text)
        self._count_timer.start()

    def _remove_pair(self) -> None:
        for item in self.pair_list.selectedItems():
            self.pair_list.takeItem(self.pair_list.row(item))
        self._count_timer.start()

    def _pair_names(self) -> list[tuple[str, str]]:
        if self.pair_list.count():
            texts = [self.pair_list.item(i).text() for i in range(self.pair_list.count())]
            return [tuple(text.split("  ←  ")) for text in texts]
        return [(self.image_combo.currentText(), self.labels_combo.currentText())]

    def _update_count(self) -> None:
        """Show how many slices are annotated (only those are used)."""
        parts = []
        for _, labels_name in self._pair_names():
            layer = self._layer(labels_name, Labels, "labels")
            if layer is None:
                continue
            labels = np.asarray(layer.data)
            total = int(np.prod(labels.shape[:-2], dtype=np.int64))
            flat = labels.reshape(-1, *labels.shape[-2:])
            annotated = int(flat.any(axis=(1, 2)).sum())
            parts.append(f"{labels_name}: {annotated} of {total} slice(s) annotated")
        note = "Only slices with a nonzero label are used for training."
        self.count_label.setText("; ".join(parts) + ("\n" if parts else "") + note)

    # ------------------------------------------------------------------ gathering input
    def _layer(self, name: str, kind: type, what: str, required: bool = False):
        if name and name in self.viewer.layers and isinstance(self.viewer.layers[name], kind):
            return self.viewer.layers[name]
        if required:
            raise ValueError(
                f"No {what} layer chosen: open an image and a labels layer drawn on it (or use "
                "folders on disk)."
            )
        return None

    def _stack(self, image_name: str, labels_name: str) -> AnnotatedStack:
        image = self._layer(image_name, Image, "image", required=True)
        labels = self._layer(labels_name, Labels, "labels", required=True)
        data = image.data[0] if image.multiscale else image.data
        label_data = labels.data[0] if labels.multiscale else labels.data
        return AnnotatedStack(image.name, data, label_data, rgb=bool(image.rgb))

    def class_map(self) -> ClassMap:
        """The class map typed in the widget (raises ValueError with a message)."""
        if self.one_class_check.isChecked():
            name = " ".join(self.class_name_edit.text().split())
            if not name:
                raise ValueError("Type a class name, e.g. 'nucleus' (what the labels show).")
            return ClassMap.single_class(name)
        return parse_class_map(self.class_map_edit.text())

    def dataset(self) -> tuple[SliceDataset, str]:
        """The training data and a one-line description (same code path as the CLI)."""
        class_map = self.class_map()
        if self.source_combo.currentText() == FOLDERS:
            return self._folder_dataset(class_map)
        stacks = [self._stack(image, labels) for image, labels in self._pair_names()]
        pairs = annotated_pairs(stacks)
        total = sum(stack.n_slices for stack in stacks)
        return training_dataset(pairs, class_map), f"{len(pairs)} annotated of {total} slice(s)"

    def _folder_dataset(self, class_map: ClassMap) -> tuple[SliceDataset, str]:
        import warnings

        images, labels = self.images_dir_edit.text().strip(), self.labels_dir_edit.text().strip()
        if not images or not labels:
            raise ValueError("Choose an images folder and a labels folder.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = SliceDataset.from_folders(
                images, labels, class_map, label_suffix=self.label_suffix_edit.text().strip()
            )
        skipped = len(dataset.skipped) + len(dataset.unmatched)
        if caught:
            notify_info(f"{skipped} file(s) skipped: {caught[0].message}")
        return dataset, f"{dataset.n_pairs} file pair(s), {len(dataset)} sample(s)"

    def training_config(self, output: Path) -> TrainingConfig:
        """The settings as the engine's TrainingConfig (the CLI's defaults elsewhere)."""
        return TrainingConfig(
            epochs=self.epochs_spin.value(),
            lr=_float(self.lr_edit.text(), "Learning rate"),
            clip_lr=_float(self.clip_lr_edit.text(), "CLIP learning rate"),
            mode=MODES[self.mode_combo.currentText()],
            val_fraction=round(self.val_spin.value(), 4),
            seed=self.seed_spin.value(),
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
            output_dir=str(output),
            max_steps=self.max_steps_spin.value() or None,
            checkpoint_every=self.checkpoint_every_spin.value() or None,
        )

    def _output(self) -> Path:
        text = self.output_edit.text().strip()
        if not text:
            raise ValueError("Choose an output folder for the checkpoints.")
        return Path(text).expanduser()

    # ------------------------------------------------------------------ training
    @property
    def running(self) -> bool:
        return self.job is not None

    def start_training(self) -> bool:
        """Check the input and start a new run; False if refused (see notifications)."""
        if self._refuse_if_running():
            return False
        dataset, description = self.dataset()
        output = self._output()
        if has_checkpoint(output):
            answer = self._ask_existing_output(output)
            if answer == CANCEL:
                return False
            if answer == NEW_NAME:
                output = next_free_folder(output)
                self.output_edit.setText(str(output))
            else:
                remove_run_files(output)
        config = self.training_config(output)
        request = TrainingRequest(self.preset_combo.currentText(), dataset, config, False)
        request.description = description
        return self._start(request)

    def resume_training(self) -> bool:
        """Continue the run saved in the output folder with its saved settings."""
        from ..training.state import load_state, resolve_resume_path

        if self._refuse_if_running():
            return False
        output = self._output()
        try:
            saved = load_state(resolve_resume_path(output, TrainingConfig.last_name)).info
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Nothing to resume in {output}: {error_message(error)}. Choose the output "
                "folder of an interrupted run."
            ) from None
        self._apply_saved_settings(saved)
        dataset, description = self.dataset()
        config = self.training_config(output)
        request = TrainingRequest(saved["model_config"]["name"], dataset, config, True)
        request.description = description
        return self._start(request)

    def _apply_saved_settings(self, saved: dict) -> None:
        """Settings a resumed run must keep (the preset, seed, mode, rates)."""
        training = saved["training_config"]
        self.preset_combo.setCurrentText(saved["model_config"]["name"])
        self.seed_spin.setValue(int(training["seed"]))
        self.mode_combo.setCurrentText(next(k for k, v in MODES.items() if v == training["mode"]))
        self.lr_edit.setText(f"{training['lr']:g}")
        self.clip_lr_edit.setText(f"{training['clip_lr']:g}")
        self.val_spin.setValue(float(training["val_fraction"]))

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
        config = request.config
        self.run = RunRecord(Path(config.output_dir), request.preset)
        self.plot.clear()
        self.progress.setRange(0, 0)
        self.eta_label.setText("")
        verb = "Resuming" if request.resume else "Starting"
        self.status_label.setText(f"{verb}: {request.description} -> {config.output_dir}")
        worker = create_worker(iterate, job.generator, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(guarded(self._on_event))
        worker.finished.connect(functools.partial(self._on_finished, job))
        # Runs in the worker thread right after an abort, while the generator is suspended.
        worker.aborted.connect(job.close, Qt.ConnectionType.DirectConnection)
        self.job, self.worker = job, worker
        self._set_running(True)
        self.probe.start()
        self._register_task()
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop after the current step; the last checkpoint written stays valid."""
        if self.job is not None and not self.job.cancel_requested.is_set():
            self.job.cancel_requested.set()
            self.status_label.setText("Cancelling after the current step…")

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.train_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)

    # ------------------------------------------------------------------ events
    def _on_event(self, event: Any) -> None:
        if _deleted(self):  # the viewer was closed; the worker's last events arrive late
            return
        run = self.run
        run.events.append(event)
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
        elif isinstance(event, CheckpointEvent):
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

    def _show_step(self, event: StepEvent) -> None:
        self.progress.setRange(0, event.total_steps)
        self.progress.setValue(event.step)
        self.eta_label.setText(
            f"Epoch {event.epoch}, step {event.step}/{event.total_steps}, loss "
            f"{event.loss:.4f}; elapsed {format_seconds(event.elapsed_s)}, "
            f"ETA {format_seconds(event.eta_s)}"
        )
        self.plot.add_loss(event.step, event.loss, event.total_steps)

    def _on_finished(self, job: TrainingJob, *args) -> None:
        if job is not self.job or _deleted(self):
            return
        self.job, self.worker = None, None
        self.probe_summary = self.probe.stop()
        self._set_running(False)
        self._finish_task()
        run = self.run
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if run.result is not None else 0)
        self.status_label.setText(self._summary(run) + "\n" + self.probe_summary.describe())
        self._update_result_buttons()

    def _summary(self, run: RunRecord) -> str:
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
        return (
            f"Finished: {result.steps} step(s) in {format_seconds(result.elapsed_s)}{best}; {kept}."
        )

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
        image = self._layer(self.preview_image_combo.currentText(), Image, "image", True)
        geometry = ImageGeometry.of(image)
        index = geometry.current_index(image, self.viewer.dims.point)
        rgb = geometry.slice_rgb(image, index)
        settings = PredictorSettings(
            preset=self.run.preset,
            checkpoint=str(path),
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
        )
        stamp = (settings, path.stat().st_mtime_ns)
        if stamp != self._preview_stamp:
            self.preview_session.release()  # the checkpoint file changed: reload it
            self._preview_stamp = stamp
        return self.preview_jobs.start(
            _preview_job,
            self.preview_session,
            settings,
            rgb,
            on_event=lambda prediction: self._show_preview(image, geometry, index, prediction),
        )

    def _show_preview(self, image: Image, geometry: ImageGeometry, index, prediction) -> None:
        layer = preview_layer(self.viewer, image, geometry)
        write_labels_slice(layer, index, prediction)

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the training data")
        if folder:
            self.export_training_folder(folder)

    def export_training_folder(self, folder: str | Path, overwrite: bool | None = None):
        """Save the annotated slices of the chosen pairs as a training folder for the CLI."""
        folder = Path(folder)
        stacks = [self._stack(image, labels) for image, labels in self._pair_names()]
        pairs = annotated_pairs(stacks)
        class_map = self.class_map()
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


def _preview_job(session: PredictorSession, settings: PredictorSettings, rgb: np.ndarray):
    if not session.is_loaded(settings):
        yield Progress(f"Loading {Path(settings.checkpoint).name}…")
    predictor = session.predictor(settings)
    names = predictor.closed_set_classes
    if not names:
        raise ValueError("The checkpoint holds no class names to preview.")
    yield Progress("Segmenting the current slice…")
    yield predictor.segment(rgb, names)
    yield Progress("Preview done.", 1, 1)


def preview_layer(viewer, image: Image, geometry: ImageGeometry) -> Labels:
    """The plugin's '<image> preview' labels layer (created empty; never a user's layer)."""
    for layer in viewer.layers:
        marker = layer.metadata.get(MARKER) if isinstance(layer.metadata, dict) else None
        if (
            isinstance(layer, Labels)
            and isinstance(marker, dict)
            and marker.get("role") == "preview"
            and marker.get("image") == image.name
            and tuple(layer.data.shape) == geometry.labels_shape
        ):
            return layer
    return viewer.add_labels(
        np.zeros(geometry.labels_shape, dtype=np.uint16),
        name=free_name(viewer, f"{image.name} preview"),
        scale=geometry.scale,
        translate=geometry.translate,
        metadata={MARKER: {"role": "preview", "image": image.name, "classes": []}},
        features=class_features([]),
    )


def _stop_job(widget: TrainingWidget, *args) -> None:
    """On the widget's destruction: make a running job stop at its next event."""
    job = getattr(widget, "job", None)
    if job is not None:
        job.cancel_requested.set()


def _is_user_layer(layer, kind: type) -> bool:
    return isinstance(layer, kind) and not (
        isinstance(layer.metadata, dict) and MARKER in layer.metadata
    )


def _refill(combo: QComboBox, names: list[str]) -> None:
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)


def _spin(value: int, low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number like 1e-4, got {text!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative number, got {text!r}.")
    return value


def _path_row(placeholder: str, browse) -> tuple[QLineEdit, QWidget]:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    button = QPushButton("…")
    button.setMaximumWidth(32)
    button.clicked.connect(on_click(lambda: browse(edit)))
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return edit, row


def _browse_dir_dialog(parent: QWidget, edit: QLineEdit, title: str) -> None:
    folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
    if folder:
        edit.setText(folder)


def _form_panel(rows: list) -> QWidget:
    panel = QWidget()
    form = QFormLayout(panel)
    form.setContentsMargins(0, 0, 0, 0)
    for label, widget in rows:
        form.addRow(label, widget)
    return panel
