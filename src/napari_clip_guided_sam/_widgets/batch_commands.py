"""Menu commands "Segment stack..." and "Segment folder...": small panels over the batch code.

Both run `inference.batch` generators (the code the CLI runs) in a napari worker with a
progress bar and a Cancel button; a cancelled file leaves no output behind (outputs appear
only when complete, and the job's generator is closed when the worker stops). The stack
result opens as a Labels layer on the image's grid (same scale and translate).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QLineEdit, QPushButton, QWidget

from .._reader import read_label_file
from ..data.axes import stack_axes
from ..data.class_map import parse_class_names
from ..data.formats import is_image_path
from ..data.image import ImageData
from ..data.normalize import NormalizeConfig
from ..data.reader import read_image_lazy
from ..data.units import length_unit
from ..inference import batch
from ..inference.instances import INSTANCE_METHODS, InstanceConfig
from ..inference.session import PredictorSession, PredictorSettings
from ..inference.tiles import TILING_HELP, TILING_MODES, TilingConfig
from ..model.guide import validate_class_names
from ..model.runtime import DEVICE_CHOICES
from ..model.weights import MissingWeightsError
from ._common import JobPanel, Progress, notify_info, notify_warning, user_action
from ._forms import browse_row, choose_folder, combo, line_edit, refill
from ._layers import full_resolution, layer_named, output_metadata
from ._messages import MessagePanel
from ._model_choice import SAM_WEIGHTS_NOTE, ModelChoice, sam_weights_field
from ._panels import AdvancedSection, DockPanel
from ._shared_model import viewer_session

STACK_PANEL = "Segment stack (CLIP-Guided SAM)"
FOLDER_PANEL = "Segment folder (CLIP-Guided SAM)"
NO_INSTANCES = "none (class labels)"


# ---------------------------------------------------------------------------- commands
def segment_stack_command(viewer: napari.viewer.Viewer) -> SegmentStackPanel:
    """Menu command: open (or show) the "Segment stack" panel for the active layer."""
    panel = _show_panel(viewer, STACK_PANEL, SegmentStackPanel)
    panel.select_active_layer()
    return panel


def segment_folder_command(viewer: napari.viewer.Viewer) -> SegmentFolderPanel:
    """Menu command: open (or show) the "Segment folder" panel."""
    return _show_panel(viewer, FOLDER_PANEL, SegmentFolderPanel)


def _show_panel(viewer, name: str, kind: type) -> Any:
    existing = viewer.window.dock_widgets.get(name)
    if isinstance(existing, kind):
        dock = existing.parent()
        if dock is not None:
            dock.show()
            dock.raise_()
        return existing
    panel = kind(viewer)
    viewer.window.add_dock_widget(panel, name=name, area="right", tabify=True)
    return panel


# ---------------------------------------------------------------------------- jobs
@dataclass
class StackResult:
    """The finished stack: the label file written (or None) and the labels if in memory."""

    output: Path | None
    labels: np.ndarray | None


def stack_job(
    session: PredictorSession,
    settings: PredictorSettings,
    image: ImageData,
    options: batch.SegmentOptions,
    output: Path | None,
) -> Generator[Progress | StackResult, None, None]:
    """Segment one stack (to a file, or in memory when ``output`` is None)."""
    yield Progress(f"Loading model {settings.describe()}…")
    predictor = session.predictor(settings)
    if output is not None:
        steps = batch.segment_stack(predictor, image, output, options)
    else:
        steps = batch.segment_stack_to_array(predictor, image, options)
    with contextlib.closing(steps):
        result = yield from _slice_progress(steps)
    yield StackResult(output, None if output is not None else result)


def folder_job(
    session: PredictorSession,
    settings: PredictorSettings,
    source: Path,
    output_dir: Path,
    options: batch.SegmentOptions,
    allow_same_folder: bool,
) -> Generator[Any, None, None]:
    """Segment a folder; file-level events are passed on, slices become progress."""
    yield Progress(f"Loading model {settings.describe()}…")
    predictor = session.predictor(settings)
    extra = {
        "preset": settings.preset,
        "checkpoint": settings.checkpoint,
        "device": str(predictor.device),
    }
    events = batch.segment_batch(
        predictor,
        source,
        output_dir,
        options,
        allow_same_folder=allow_same_folder,
        settings=extra,
    )
    with contextlib.closing(events):
        yield from _slice_progress(events)


def _slice_progress(steps: Generator) -> Generator[Any, None, Any]:
    """Turn `SliceDone`/`FileStarted` into `Progress`; pass other events; return the result."""
    prefix = ""
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, batch.FileStarted):
            prefix = f"[{event.file_index + 1}/{event.n_files}] {Path(event.path).name}: "
            yield Progress(f"{prefix}starting…", 0, event.n_slices)
        elif isinstance(event, batch.SliceDone):
            yield Progress(
                f"{prefix}slice {event.index + 1}/{event.total}", event.index + 1, event.total
            )
        else:
            yield event


# ---------------------------------------------------------------------------- layers
def image_data_of(layer: Image) -> ImageData:
    """The layer as `ImageData`: its source file (lazily) when that file holds the same
    array, so the output keeps the file's metadata; else the layer's data with its scale."""
    data = full_resolution(layer)
    path = layer.source.path
    if path and is_image_path(path):  # a file, or a zarr store (a folder)
        with contextlib.suppress(ValueError, OSError):
            image = read_image_lazy(path)
            if image.shape == tuple(data.shape):
                return image
    spatial_axes = stack_axes(data.ndim - (1 if layer.rgb else 0))
    axes = spatial_axes + ("C" if layer.rgb else "")
    scale = tuple(float(s) for s in layer.scale)  # one per non-RGB axis
    known = length_unit(layer.units[-1]) if len(layer.units) else None
    unit = known.symbol if known is not None else None
    calibrated = unit is not None or any(s != 1.0 for s in scale)
    pixel_size = scale[-len(spatial_axes) :] if calibrated else None
    return ImageData(data, axes, pixel_size, unit, None, {"dtype": str(data.dtype)})


def open_labels(viewer, image: Image, result: StackResult, name: str):
    """Add the stack result as a Labels layer on the image's grid."""
    labels = result.labels
    if labels is None:
        labels = read_label_file(result.output).array
    data = full_resolution(image)
    grid = tuple(data.shape[:-1] if image.rgb else data.shape)
    if tuple(labels.shape) != grid and int(np.prod(labels.shape)) == int(np.prod(grid)):
        labels = labels.reshape(grid)  # TIFF readers squeeze singleton axes
    return viewer.add_labels(
        labels,
        name=name,
        scale=image.scale,
        translate=image.translate,
        metadata=output_metadata("batch labels", image, output=str(result.output or "")),
    )


# ---------------------------------------------------------------------------- panels
class _BatchPanel(DockPanel):
    """Shared form: input, classes, model (checkpoint decides the preset), output, Run,
    progress, the last message, and an Advanced section (device, own SAM weights)."""

    settings_key = "batch"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = viewer_session(viewer)
        self.messages = MessagePanel()
        self.input_form = QFormLayout()
        self.classes = line_edit(
            "What to find: class names separated by commas; label k in the output is the "
            "k-th name (0 is background). Choosing a checkpoint fills in its classes.",
            "e.g. nucleus, cell",
            "nucleus",
        )
        self.input_form.addRow("Class names", self.classes)
        self.model = ModelChoice()
        self.preset = self.model.preset_combo
        self.checkpoint = self.model.checkpoint_edit
        self.model.checkpoint_edit.textChanged.connect(self._fill_classes_from_checkpoint)
        self.instances = combo(
            [NO_INSTANCES, *INSTANCE_METHODS],
            "Class labels: every pixel of a class has the same value. connected: each "
            "separate object gets its own number. watershed: also cuts touching objects "
            "apart (best for crowded nuclei).",
        )
        self.output_dir = line_edit("The folder the label files are written to")
        self.output_form = QFormLayout()
        self.output_form.addRow("Objects", self.instances)
        self.output_form.addRow(
            "Output folder",
            _browse_row(self.output_dir, self._browse_output, "Choose the output folder"),
        )
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Start segmenting in the background")
        self.run_button.clicked.connect(user_action(self.messages, self.run))
        self.jobs = JobPanel(self.messages)
        self.messages.add_remedy(
            MissingWeightsError,
            "Use the tiny preset for now",
            self.model.use_tiny,
            "Switch to 'tiny' (random weights, no download) to try the workflow",
        )
        self.device = combo(
            list(DEVICE_CHOICES),
            "Where the model runs: auto picks a CUDA GPU, then Apple's GPU (MPS), then the CPU.",
        )
        self.sam_weights_edit, sam_row = sam_weights_field(self)
        self.advanced = AdvancedSection(self.settings_key)
        self.tiling = combo(list(TILING_MODES), TILING_HELP)
        self.advanced.add_row("Tiling", self.tiling)
        self.advanced.add_row("Device", self.device)
        self.advanced.add_row("Own SAM weights", sam_row)
        self.advanced.add_note(SAM_WEIGHTS_NOTE)
        self._job: Generator | None = None
        self.summary = ""  # the last run's outcome, kept in the status line

    def _layout(self) -> None:
        layout = self.content_layout
        inputs = QGroupBox("Input")
        inputs.setLayout(self.input_form)
        outputs = QGroupBox("Output")
        outputs.setLayout(self.output_form)
        for part in (inputs, self.model, outputs, self.run_button, self.jobs, self.messages):
            layout.addWidget(part)
        layout.addWidget(self.advanced)
        self.finish()

    def _fill_classes_from_checkpoint(self, *_) -> None:
        header = self.model.header
        if header is not None and header.class_names:
            self.classes.setText(", ".join(header.class_names))

    def _browse_output(self) -> None:
        choose_folder(self, self.output_dir, "Output folder")

    @property
    def settings(self) -> PredictorSettings:
        return PredictorSettings(
            preset=self.model.preset,
            checkpoint=self.model.checkpoint,
            device=self.device.currentText(),
            sam_weights=self.sam_weights_edit.text(),
        )

    def options(self, **changes: Any) -> batch.SegmentOptions:
        """The batch options (class names through the model's shared check)."""
        names = parse_class_names(self.classes.text())
        validate_class_names(names)
        method = self.instances.currentText()
        return batch.SegmentOptions(
            class_names=tuple(names),
            instances=InstanceConfig(method) if method != NO_INSTANCES else None,
            normalize=NormalizeConfig(),
            tiling=TilingConfig(enabled=TILING_MODES[self.tiling.currentText()]),
            **changes,
        )

    @property
    def running(self) -> bool:
        return self.jobs.running

    def _start(self, job: Generator, on_event) -> bool:
        self._job = job
        return self.jobs.start(lambda: job, on_event=on_event, on_done=self._on_done)

    def _on_done(self, ok: bool) -> None:
        if self._job is not None:
            self._job.close()  # a cancelled stack removes its temporary files now
            self._job = None
        if self.summary:
            self.jobs.show_status(self.summary)


class SegmentStackPanel(_BatchPanel):
    """Segment every slice of an image layer; the result opens as a Labels layer."""

    settings_key = "segment_stack"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(viewer, parent)
        self.layer_choice = combo([], "The image (2D, or a Z/T stack) to segment slice by slice")
        self.input_form.insertRow(0, "Image layer", self.layer_choice)
        self.output_dir.setPlaceholderText("empty: keep the labels in memory only")
        self._layout()
        self.result_layer = None
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, event=None) -> None:
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        refill(self.layer_choice, names)

    def select_active_layer(self) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            self.layer_choice.setCurrentText(active.name)
            source = active.source.path
            if source and not self.output_dir.text():
                self.output_dir.setText(str(Path(source).parent / "segmented"))

    def run(self) -> bool:
        name = self.layer_choice.currentText()
        layer = layer_named(self.viewer, name, Image)
        if layer is None:
            raise ValueError("Choose an image layer to segment (open an image first).")
        image = image_data_of(layer)
        options = self.options()
        output = None
        if self.output_dir.text().strip():
            folder = Path(self.output_dir.text().strip())
            stem = image.path.name if image.path is not None else f"{_safe_name(name)}.tif"
            output = batch.output_path_for(Path(stem), folder, options)
            if output.exists():
                raise ValueError(
                    f"{output} exists; choose another output folder or delete the file."
                )
        job = stack_job(self.session, self.settings, image, options, output)

        self.summary = ""

        def on_event(event) -> None:
            if isinstance(event, StackResult):
                self.result_layer = open_labels(self.viewer, layer, event, f"{name} labels")
                where = self.result_layer.name
                if event.output is not None:
                    notify_info(f"Labels written to {event.output}")
                    self.summary = f"Done: layer '{where}', saved as {event.output.name}"
                else:
                    self.summary = f"Done: layer '{where}' (in memory only, not saved)"

        return self._start(job, on_event)


class SegmentFolderPanel(_BatchPanel):
    """Segment every image of a folder into label files, with a report."""

    settings_key = "segment_folder"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(viewer, parent)
        self.input_dir = line_edit("The folder of images to segment", "folder of images")
        self.input_form.insertRow(
            0,
            "Input folder",
            _browse_row(self.input_dir, self._browse_input, "Choose the folder of images"),
        )
        self.output_dir.setPlaceholderText("empty: 'segmented' inside the input folder")
        self.overwrite = QCheckBox("Redo files already segmented")
        self.overwrite.setToolTip(
            "Off: images whose label file exists are skipped, so a stopped run resumes. "
            "On: segment them again and replace their label files."
        )
        self.same_folder = QCheckBox("Allow writing into the input folder")
        self.same_folder.setToolTip(
            "Off: the input folder is refused as output folder, so label files never mix "
            "with your images. Earlier label files are never taken as inputs."
        )
        self.output_form.addRow(self.overwrite)
        self.output_form.addRow(self.same_folder)
        self._layout()
        self.finished: batch.BatchFinished | None = None

    def _browse_input(self) -> None:
        path = choose_folder(self, self.input_dir, "Folder of images")
        if path and not self.output_dir.text():
            self.output_dir.setText(str(Path(path) / "segmented"))

    def run(self) -> bool:
        source = Path(self.input_dir.text().strip())
        if not self.input_dir.text().strip() or not source.is_dir():
            raise ValueError("Choose an existing input folder (the folder of images).")
        output = self.output_dir.text().strip()
        output_dir = Path(output) if output else source / "segmented"
        options = self.options(overwrite=self.overwrite.isChecked())
        self.finished, self.summary = None, ""
        job = folder_job(
            self.session, self.settings, source, output_dir, options, self.same_folder.isChecked()
        )
        return self._start(job, self._on_event)

    def _on_event(self, event) -> None:
        if isinstance(event, batch.FileFailed):
            notify_warning(f"{event.path.name} failed: {event.reason}")
        elif isinstance(event, batch.BatchFinished):
            self.finished = event
            message = (
                f"{event.n_done} done, {event.n_skipped} skipped, {event.n_failed} "
                f"failed; report: {event.report_path.with_suffix('.csv').name} in the "
                "output folder"
            )
            if event.stopped:
                notify_warning(f"Stopped early: {event.stopped}. {message}")
                self.messages.show_error(f"Stopped early: {event.stopped}. {message}")
            else:
                notify_info(message)
            self.summary = message


def _safe_name(name: str) -> str:
    """A layer name usable as a file name."""
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip() or "image"


def _browse_row(line: QLineEdit, browse, tip: str) -> QWidget:
    return browse_row(line, browse, tip, text="Browse…", width=None)
