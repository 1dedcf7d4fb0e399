"""The segment widget: class names (+ clicks) -> a labels layer, for a slice or a whole stack;
and objects one at a time (clicks, boxes, text) committed into a layer of objects.

The primary flow comes first (image, classes, mode and clicks, model, the two segment
buttons, progress and the last message); thresholds, channels, device, precision and the
base weights file sit in a remembered "Advanced" section. The model lives in the viewer's
`PredictorSession`, shared with the plugin's other widgets (one model per viewer); every
computation runs in a napari worker (`JobPanel`), and results are written to the plugin's
own output layers on the GUI thread. Moving a click re-runs only SAM's prompt encoder and
mask decoder: the predictor caches the image embedding per (slice, class); with "Keep
embeddings on disk" (Advanced) they also go to the on-disk store, which "Precompute for this
stack" fills for every slice, so revisiting a slice or class is decoder-only. The object
workflow (its own group, `_objects.ObjectPanel`) shares the image, classes, model, job panel
and click layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Points, Shapes
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QWidget

from ..data.class_map import parse_class_names
from ..inference.embedding_store import DEFAULT_MAX_GB, EmbeddingStore
from ..inference.predictions import Prediction
from ..inference.session import PredictorSettings
from ..inference.tiles import TILING_HELP, TILING_MODES, TilingConfig
from ..model.guide import validate_class_names
from ..model.preprocess import validate_rgb
from ..model.runtime import DEVICE_CHOICES, PRECISION_CHOICES
from ..model.weights import MissingWeightsError
from ._common import JobPanel, guarded, notify_info, user_action
from ._forms import combo, double_spin, form_box, int_spin, line_edit, refill
from ._layers import (
    NEGATIVE,
    POSITIVE,
    ImageGeometry,
    find_output,
    full_resolution,
    is_plugin_output,
    labels_output,
    layer_named,
    prompts_output,
    write_labels_slice,
    write_similarity_slices,
)
from ._messages import MessagePanel
from ._model_choice import SAM_WEIGHTS_NOTE, ModelChoice, sam_weights_field
from ._objects import OBJECTS, ObjectPanel
from ._panels import AdvancedSection, DockPanel
from ._segment_jobs import SegmentRequest, SliceResult, precompute_job, segment_job
from ._shared_model import viewer_session

if TYPE_CHECKING:
    import napari

TEXT_ONLY, TEXT_AND_POINTS = "class name only", "class name + clicks"
REFRESH_DELAY_MS = 100  # debounce of point edits before the decoder-only refresh
TOGGLE_KEY = "t"
SETTINGS_KEY = "segment_widget"


def parse_channels(text: str) -> tuple[int, ...] | None:
    """'0, 2' -> (0, 2); blank -> None (all channels, up to three)."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        return None
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"Channels must be numbers like '0' or '0, 2', got {text!r}.") from None


class SegmentWidget(DockPanel):
    """Dock widget: segment an image layer by class names, optionally steered by clicks."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = viewer_session(napari_viewer)
        self.last_prediction: Prediction | None = None
        self._pending_refresh = False
        self._watched_points: list[Points | Shapes] = []
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DELAY_MS)
        self._build()
        self._refresh_timer.timeout.connect(user_action(self.messages, self._refresh_from_points))
        layers = self.viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self._update_image_choices)
        self._update_image_choices()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.messages = MessagePanel()
        self.image_combo = combo(
            [], "The image to segment: a 2D image, or a stack (Z, time…) of 2D slices."
        )
        self.image_combo.currentIndexChanged.connect(self._update_channel_choices)
        image_box = form_box("Image", [("Image layer", self.image_combo)])

        self.classes_edit = line_edit(
            "What to find, in plain words: one or more class names separated by commas "
            "(e.g. 'nucleus, mitochondrion'). Each class gets its own label value.",
            "e.g. nucleus, mitochondrion",
        )
        self.mode_combo = combo(
            [TEXT_ONLY, TEXT_AND_POINTS, OBJECTS],
            "Class name only: the model finds the objects from the name alone. Class name + "
            "clicks: your clicks on the click layer also steer it (green: is the object, "
            "red: is not); each click updates the mask within a second. Objects: clicks and "
            "boxes make one object at a time (see Objects), previewed after each edit.",
        )
        self.points_button = QPushButton("Add click layer")
        self.points_button.setToolTip(
            "Create (or select) the points layer for clicks on this image; press "
            f"{TOGGLE_KEY.upper()} in it to switch between positive and negative clicks."
        )
        self.points_button.clicked.connect(user_action(self.messages, self.add_points_layer))
        self.click_label_combo = combo(
            [POSITIVE, NEGATIVE],
            "Whether new clicks mark the object (positive, green) or the background "
            f"(negative, red); {TOGGLE_KEY.upper()} on the click layer switches.",
        )
        self.click_label_combo.setMinimumContentsLength(8)
        self.click_label_combo.currentTextChanged.connect(guarded(self._apply_click_label))
        clicks = QHBoxLayout()
        clicks.addWidget(self.points_button)
        clicks.addWidget(self.click_label_combo)
        prompt_box = form_box(
            "What to segment",
            [("Classes", self.classes_edit), ("Mode", self.mode_combo), ("Clicks", clicks)],
        )

        self.model = ModelChoice()
        self.preset_combo = self.model.preset_combo
        self.checkpoint_edit = self.model.checkpoint_edit

        self.segment_button = QPushButton("Segment current slice")
        self.segment_button.setToolTip("Segment the slice on screen (updates the labels layer)")
        self.segment_button.clicked.connect(user_action(self.messages, self.segment_current_slice))
        self.stack_button = QPushButton("Segment whole stack")
        self.stack_button.setToolTip("Segment every slice of the image, in the background")
        self.stack_button.clicked.connect(user_action(self.messages, self.segment_stack))
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.stack_button)
        self.precompute_button = QPushButton("Precompute for this stack")
        self.precompute_button.setToolTip(
            "Compute every slice's embeddings for these classes in the background and keep "
            "them on disk (turns on 'Keep embeddings on disk'): segmenting a slice or class "
            "again then needs only the fast decoder, in this session and later ones"
        )
        self.precompute_button.clicked.connect(user_action(self.messages, self.precompute_stack))
        self.jobs = JobPanel(self.messages)
        self.objects = ObjectPanel(self)
        self.classes_edit.textChanged.connect(guarded(self.objects.update_classes))
        self.messages.add_remedy(
            MissingWeightsError,
            "Use the tiny preset for now",
            self.model.use_tiny,
            "Switch to 'tiny' (random weights, no download) to try the workflow; its masks "
            "are noise",
        )

        self.advanced = AdvancedSection(SETTINGS_KEY)
        self._build_advanced(self.advanced)

        layout = self.content_layout
        for part in (image_box, prompt_box, self.model):
            layout.addWidget(part)
        layout.addLayout(buttons)
        layout.addWidget(self.precompute_button)
        layout.addWidget(self.objects)
        layout.addWidget(self.jobs)
        layout.addWidget(self.messages)
        layout.addWidget(self.advanced)
        self.finish()

    def _build_advanced(self, advanced: AdvancedSection) -> None:
        self.channel_axis_combo = combo(
            ["none"],
            "Only for multichannel images that are not RGB: the axis that holds the "
            "channels. Leave 'none' for grey, RGB images and plain stacks.",
        )
        self.channels_edit = line_edit(
            "Only with a channel axis: 1 to 3 channel numbers used as red, green, blue "
            "(e.g. '0, 2'). Blank: all channels, up to three.",
            "all (up to 3), or e.g. 0, 2",
        )
        self.guide_threshold_spin = double_spin(
            0.8,
            0.01,
            0.99,
            "How similar to the class name a region must look to prompt SAM (0.8 in the "
            "paper). Lower it when objects are missed, raise it when background is taken.",
        )
        self.n_points_spin = int_spin(
            5,
            1,
            50,
            "How many prompt points are drawn from the similar regions in 'class name only' "
            "mode (5 in the paper; the draw is seeded, so a result repeats exactly).",
        )
        self.mask_threshold_spin = double_spin(
            0.5,
            0.0,
            0.99,
            "How sure the model must be to label a pixel (0-1; 0.5 by default). Lower: "
            "larger masks; higher: only confident pixels.",
        )
        self.tiling_combo = combo(list(TILING_MODES), TILING_HELP)
        self.similarity_check = QCheckBox("Show similarity map")
        self.similarity_check.setToolTip(
            "Also add an image layer per class with CLIP's similarity map (0-1), to see "
            "where the class name 'looks'."
        )
        self.device_combo = combo(
            list(DEVICE_CHOICES),
            "Where the model runs: auto picks a CUDA GPU, then Apple's GPU (MPS), then the CPU.",
        )
        self.precision_combo = combo(
            list(PRECISION_CHOICES),
            "Number format of the computation: auto uses 16-bit (bf16) where the hardware "
            "supports it (faster, same masks to the eye), else 32-bit (fp32).",
        )
        self.embedding_cache_check = QCheckBox("Keep embeddings on disk")
        self.embedding_cache_check.setToolTip(
            "Also keep each slice's image embeddings (per class) in the plugin's cache "
            f"folder ({EmbeddingStore().folder}, at most {DEFAULT_MAX_GB:g} GB; the least "
            "recently used go first), so revisiting a slice or class, now or in a later "
            "session, needs only the decoder. `clip-guided-sam precompute --clear` empties it."
        )
        self.sam_weights_edit, sam_row = sam_weights_field(self)
        advanced.add_row("Channel axis", self.channel_axis_combo)
        advanced.add_row("Channels", self.channels_edit)
        advanced.add_row("Similarity threshold", self.guide_threshold_spin)
        advanced.add_row("Prompt points", self.n_points_spin)
        advanced.add_row("Mask threshold", self.mask_threshold_spin)
        advanced.add_row("Tiling", self.tiling_combo)
        advanced.add_row("", self.similarity_check)
        advanced.add_row("", self.embedding_cache_check)
        advanced.add_row("Device", self.device_combo)
        advanced.add_row("Precision", self.precision_combo)
        advanced.add_row("Own SAM weights", sam_row)
        advanced.add_note(SAM_WEIGHTS_NOTE)
        self.objects.add_advanced_rows(advanced)

    # ------------------------------------------------------------------ choices
    def _image_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    @guarded
    def _update_image_choices(self, event=None) -> None:
        names = [layer.name for layer in self._image_layers() if not is_plugin_output(layer)]
        refill(self.image_combo, names)
        self._update_channel_choices()

    @guarded
    def _update_channel_choices(self, *args) -> None:
        self.channel_axis_combo.clear()
        self.channel_axis_combo.addItem("none", None)
        layer = self.image_layer()
        if layer is None or layer.rgb:
            return
        shape = full_resolution(layer).shape
        for axis in range(len(shape) - 2):
            self.channel_axis_combo.addItem(f"axis {axis} (size {shape[axis]})", axis)

    def image_layer(self) -> Image | None:
        """The chosen image layer, or None."""
        return layer_named(self.viewer, self.image_combo.currentText(), Image)

    def settings(self) -> PredictorSettings:
        """The model settings chosen in the widget (a checkpoint brings its own preset)."""
        return PredictorSettings(
            preset=self.model.preset,
            checkpoint=self.model.checkpoint,
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
            sam_weights=self.sam_weights_edit.text(),
        )

    def load_checkpoint(self, path: str | Path) -> None:
        """Use a fine-tuned checkpoint from now on (e.g. from the training widget): its
        preset is set and locked, and its class names fill the class field. The model is
        reloaded at the next segmentation if the file changed (training rewrites it every
        epoch)."""
        self.model.set_checkpoint(path)
        header = self.model.header
        if header is None:
            raise ValueError(self.model.summary.text())
        if header.class_names:
            self.classes_edit.setText(", ".join(header.class_names))

    # ------------------------------------------------------------------ clicks
    def add_points_layer(self) -> Points:
        """Create (or select) the click layer of the chosen image and switch to add mode."""
        image = self.require_image()
        geometry = ImageGeometry.of(image, self.channel_axis_combo.currentData())
        layer = prompts_output(self.viewer, image, geometry)
        self.watch_prompt_layer(layer)
        self._apply_click_label(self.click_label_combo.currentText())
        if self.mode_combo.currentText() == TEXT_ONLY:
            self.mode_combo.setCurrentText(TEXT_AND_POINTS)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def watch_prompt_layer(self, layer: Points | Shapes) -> None:
        """Refresh after every edit of this click or box layer; bind its keys."""
        if any(watched is layer for watched in self._watched_points):
            return
        self._watched_points.append(layer)
        layer.events.data.connect(self._on_points_changed)
        self.objects.bind_commit_key(layer)
        if isinstance(layer, Points):
            layer.bind_key(TOGGLE_KEY, self._toggle_click_label, overwrite=True)

    def _toggle_click_label(self, layer=None) -> None:
        current = self.click_label_combo.currentText()
        self.click_label_combo.setCurrentText(NEGATIVE if current == POSITIVE else POSITIVE)

    def _apply_click_label(self, label: str) -> None:
        for layer in self._watched_points:
            if isinstance(layer, Points) and layer in self.viewer.layers:
                layer.feature_defaults = {"label": label}

    @guarded
    def _on_points_changed(self, event=None) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.lower().endswith(("adding", "changing", "removing")):
            return  # wait for the edit to finish
        self.objects.prompt_version += 1  # the object preview no longer shows these prompts
        if self.mode_combo.currentText() in (TEXT_AND_POINTS, OBJECTS):
            self._refresh_timer.start()

    def _refresh_from_points(self) -> None:
        """Re-segment the current slice (or its object, in objects mode) after a click or a
        box edit (decoder only: the embedding is cached)."""
        if not self.session.is_loaded(self.settings()):
            return  # nothing segmented yet: the first run is the user's explicit choice
        if self.jobs.running:
            self._pending_refresh = True
            return
        if self.mode_combo.currentText() == OBJECTS:
            self.objects.refresh()
        else:
            self.segment_current_slice()

    # ------------------------------------------------------------------ segment
    def segment_current_slice(self) -> bool:
        """Segment the slice on screen; False if the input was refused (see notifications)."""
        return self._start(self.slice_request())

    def segment_stack(self) -> bool:
        """Segment every slice of the chosen image, one worker step per slice."""
        request = self._request(whole_stack=True)
        return self._start(request)

    def precompute_stack(self) -> bool:
        """Compute every slice's embeddings into the on-disk store, in the background."""
        request = self._request(whole_stack=True)
        request.embedding_store = EmbeddingStore()
        self.embedding_cache_check.setChecked(True)  # later runs read what this one stores
        return self.jobs.start(precompute_job, self.session, request, on_event=lambda event: None)

    def _start(self, request: SegmentRequest) -> bool:
        return self.jobs.start(
            segment_job,
            self.session,
            request,
            on_event=lambda event: self._show_result(request, event),
            on_done=self.on_job_done,
        )

    def require_image(self) -> Image:
        """The chosen image layer (ValueError saying what to do when there is none)."""
        image = self.image_layer()
        if image is None:
            raise ValueError(
                "No image layer chosen: open an image (or File > Open Sample > CLIP-Guided "
                "SAM) and pick it under 'Image layer'."
            )
        return image

    def slice_request(self) -> SegmentRequest:
        """The checked request for the slice on screen (the object workflow's too)."""
        return self._request(whole_stack=False)

    def _request(self, whole_stack: bool) -> SegmentRequest:
        """Gather and check the inputs on the GUI thread (errors leave layers untouched)."""
        image = self.require_image()
        class_names = parse_class_names(self.classes_edit.text())
        validate_class_names(class_names)
        settings = self.settings()
        if settings.checkpoint and not Path(settings.checkpoint).is_file():
            raise ValueError(f"Checkpoint not found: {settings.checkpoint}")
        if settings.sam_weights and not Path(settings.sam_weights).is_file():
            raise ValueError(f"SAM weights file not found: {settings.sam_weights}")
        geometry = ImageGeometry.of(image, self.channel_axis_combo.currentData())
        channels = parse_channels(self.channels_edit.text())
        if whole_stack:
            indices = geometry.slice_indices()
        else:
            self._check_2d_view(image, geometry)
            indices = [geometry.current_index(image, self.viewer.dims.point)]
        first_rgb = geometry.slice_rgb(image, indices[0], channels)
        validate_rgb(first_rgb)
        return SegmentRequest(
            image=image,
            geometry=geometry,
            channels=channels,
            class_names=class_names,
            settings=settings,
            guide_threshold=self.guide_threshold_spin.value(),
            n_points=self.n_points_spin.value(),
            mask_threshold=self.mask_threshold_spin.value(),
            indices=indices,
            first_rgb=first_rgb,
            points=self._clicks(image, geometry, indices),
            tiling=TilingConfig(enabled=TILING_MODES[self.tiling_combo.currentText()]),
            embedding_store=EmbeddingStore() if self.embedding_cache_check.isChecked() else None,
        )

    def _check_2d_view(self, image: Image, geometry: ImageGeometry) -> None:
        """'Current slice' needs a 2D view whose displayed axes are the image's Y and X."""
        dims = self.viewer.dims
        if dims.ndisplay != 2:
            raise ValueError(
                "The viewer shows 3D: switch to the 2D view to segment the current slice, "
                "or use 'Segment whole stack'."
            )
        if geometry.leading_shape and tuple(dims.displayed) != (dims.ndim - 2, dims.ndim - 1):
            raise ValueError(
                f"The viewer shows axes {tuple(dims.displayed)} of {image.name!r}, not its "
                "last two (Y, X): reset the axis order (transpose) before segmenting a slice."
            )

    def _clicks(
        self, image: Image, geometry: ImageGeometry, indices: list[tuple[int, ...]]
    ) -> dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]:
        """Clicks per slice, in text + points mode (no entry: text only on that slice)."""
        if self.mode_combo.currentText() != TEXT_AND_POINTS:
            return {}
        layer = find_output(self.viewer, "prompts", image, Points)
        if layer is None or len(layer.data) == 0:
            return {}
        self.watch_prompt_layer(layer)
        clicks = {}
        for index in indices:
            xy, labels = geometry.points_for_slice(layer, index)
            if len(xy):
                clicks[index] = (xy, labels)
        return clicks

    def _show_result(self, request: SegmentRequest, event) -> None:
        if not isinstance(event, SliceResult):
            return
        self.last_prediction = event.prediction
        labels = labels_output(self.viewer, request.image, request.geometry)
        write_labels_slice(labels, event.index, event.prediction)
        if self.similarity_check.isChecked():
            write_similarity_slices(
                self.viewer, request.image, request.geometry, event.index, event.prediction
            )
        if len(request.indices) == 1 and not event.prediction.labels.any():
            notify_info(
                f"No pixel above the mask threshold for {', '.join(request.class_names)} on "
                "this slice; try a lower mask threshold or add clicks."
            )

    def on_job_done(self, ok: bool) -> None:
        """After a job: run the commit or refresh that was asked for while it ran (a commit
        segments the current prompts itself)."""
        if self.objects.commit_pending:
            self.objects.commit_pending = False
            self._pending_refresh = False
            if ok:
                user_action(self.messages, self.objects.commit)()
            return
        if self._pending_refresh:
            self._pending_refresh = False
            self._refresh_timer.start()
