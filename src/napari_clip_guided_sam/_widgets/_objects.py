"""The segment widget's object workflow: one object at a time from clicks, boxes and text,
committed into a labels layer of objects, undone, segmented all at once, or propagated
through a stack.

The widget only gathers prompts and writes layers; the rules live in the compute modules:
an object's prompts are `inference.objects.object_prompts` (each box one object), its mask
`Predictor.segment_objects`, all instances of a class `inference.objects.instances_from_text`,
committed objects and undo `inference.annotation.ObjectAnnotations` (written through the
layer's `data_setitem`, so napari's own labels undo keeps working), and following an object
through a stack `inference.propagation.propagate`. Every model call runs in the widget's
background job (`JobPanel`, jobs in `_object_jobs`); results are written on the GUI thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QPushButton, QWidget

from ..data.class_map import parse_class_names
from ..inference.annotation import OVERLAP_RULES, Change, ObjectAnnotations, OverlapRule
from ..inference.objects import InstancesFromText, object_prompts
from ..inference.propagation import PropagationConfig, PropagationResult, PropagationStep
from ._common import notify_info, user_action
from ._forms import combo, double_spin, int_spin, refill
from ._layers import ImageGeometry, find_output
from ._object_jobs import (
    ObjectPreview,
    ObjectRequest,
    preview_job,
    propagate_job,
    segment_all_job,
)
from ._object_layers import (
    BOXES,
    COMMITTED,
    PREVIEW,
    boxes_for_slice,
    boxes_output,
    committed_output,
    feature_classes,
    preview_output,
    remove_on_slice,
    show_preview,
)
from ._panels import AdvancedSection

if TYPE_CHECKING:
    from ._segment import SegmentWidget
    from ._segment_jobs import SegmentRequest

OBJECTS = "objects: clicks + boxes"  # the segment widget's mode for the object workflow
COMMIT_KEY = "Shift-C"  # on the plugin's click, box, preview and objects layers


class ObjectPanel(QGroupBox):
    """The "Objects" group of the segment widget, and its rows of the Advanced section."""

    def __init__(self, owner: SegmentWidget, parent: QWidget | None = None):
        super().__init__("Objects", parent)
        self.owner = owner
        self.viewer = owner.viewer
        self.jobs = owner.jobs
        self.preview: ObjectPreview | None = None
        self.prompt_version = 0
        self.commit_pending = False  # Commit was asked for while a job ran
        self._annotations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._propagated: list[PropagationStep] = []
        self._stop_reasons = ""  # why the running propagation stopped in each direction
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        messages = self.owner.messages
        self.class_combo = combo(
            [],
            "The class of the next object (one of the classes typed above); it is stored "
            "with the object in the objects layer.",
        )
        self.boxes_button = self._button(
            "Add box layer",
            "Create (or select) the rectangles layer of box prompts on this image: draw a box "
            "around an object; each box is one object (with the clicks inside it).",
            user_action(messages, self.add_boxes_layer),
        )
        self.preview_button = self._button(
            "Preview",
            "Segment the current object(s) on this slice from the clicks, boxes and class "
            "text, without committing (moving a click or box refreshes it in objects mode).",
            user_action(messages, self.request_preview),
        )
        self.commit_button = self._button(
            "Commit",
            "Write the current object(s) into the '<image> objects' layer, each as a new id "
            f"with its class, then clear the prompts of this slice (key: {COMMIT_KEY} on the "
            "plugin's click, box or objects layer).",
            user_action(messages, self.commit),
        )
        self.clear_button = self._button(
            "Clear",
            "Drop the clicks and boxes of this slice and the preview (committed objects stay).",
            user_action(messages, self.clear),
        )
        self.undo_button = self._button(
            "Undo",
            "Revert the last commit, segment-all or propagation (napari's own undo of the "
            "objects layer keeps working too).",
            user_action(messages, self.undo),
        )
        self.segment_all_button = self._button(
            "Segment all",
            "Every object of the chosen class on this slice, from the class text, committed "
            "as new objects in one step (one Undo).",
            user_action(messages, self.segment_all),
        )
        self.propagate_button = self._button(
            "Propagate",
            "Follow the selected object of the objects layer (the last committed one by "
            "default) to the slices before and after, in the background; it keeps its id.",
            user_action(messages, self.propagate),
        )
        grid = QGridLayout(self)
        grid.addWidget(self.boxes_button, 0, 0, 1, 2)
        grid.addWidget(self.class_combo, 0, 2, 1, 2)
        for column, button in enumerate(
            (self.preview_button, self.commit_button, self.clear_button, self.undo_button)
        ):
            grid.addWidget(button, 1, column)
        grid.addWidget(self.segment_all_button, 2, 0, 1, 2)
        grid.addWidget(self.propagate_button, 2, 2, 1, 2)

    @staticmethod
    def _button(text: str, tip: str, slot: Callable) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def add_advanced_rows(self, advanced: AdvancedSection) -> None:
        """The object workflow's rarely changed settings."""
        self.text_guide_check = QCheckBox("Class text guides objects")
        self.text_guide_check.setToolTip(
            "On: the class's similarity map helps the clicks and boxes of an object. Off: "
            "only your clicks and boxes prompt it (a click or box is then required)."
        )
        self.text_guide_check.setChecked(True)
        self.overlap_combo = combo(
            list(OVERLAP_RULES),
            "keep: a new object only fills background, committed objects are never eaten; "
            "overwrite: a new object takes every pixel of its mask.",
        )
        self.min_overlap_spin = double_spin(
            0.3,
            0.0,
            1.0,
            "Propagation stops at the first slice whose mask overlaps the previous slice's by "
            "less than this IoU (the object ended, or the mask jumped elsewhere).",
        )
        self.min_iou_spin = double_spin(
            0.0,
            0.0,
            1.0,
            "Propagation also stops where SAM's own predicted IoU is below this (0: off; "
            "fine-tuning does not train that score).",
        )
        self.max_steps_spin = int_spin(
            0,
            0,
            100_000,
            "Propagation goes at most this many slices each way (0: to the stack's ends).",
        )
        advanced.add_row("", self.text_guide_check)
        advanced.add_row("New objects", self.overlap_combo)
        advanced.add_row("Stop below overlap", self.min_overlap_spin)
        advanced.add_row("Stop below pred. IoU", self.min_iou_spin)
        advanced.add_row("Slices each way", self.max_steps_spin)

    # ------------------------------------------------------------------ choices
    def update_classes(self, text: str) -> None:
        """Offer the classes typed in the widget (invalid text offers none)."""
        try:
            names = parse_class_names(text)
        except ValueError:
            names = []
        refill(self.class_combo, names)

    def class_name(self) -> str:
        name = self.class_combo.currentText()
        if not name:
            raise ValueError("Type the object's class under 'Classes' (e.g. nucleus).")
        return name

    def propagation_config(self) -> PropagationConfig:
        return PropagationConfig(
            min_overlap=self.min_overlap_spin.value(),
            min_predicted_iou=self.min_iou_spin.value(),
            max_steps=self.max_steps_spin.value() or None,
            threshold=self.owner.mask_threshold_spin.value(),
        )

    # ------------------------------------------------------------------ layers
    def add_boxes_layer(self) -> None:
        """Create (or select) the box layer of the chosen image, in rectangle mode."""
        image = self.owner.require_image()
        layer = boxes_output(self.viewer, image, self._geometry(image))
        self.owner.watch_prompt_layer(layer)
        self.owner.mode_combo.setCurrentText(OBJECTS)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def bind_commit_key(self, layer) -> None:
        layer.bind_key(COMMIT_KEY, self._on_commit_key, overwrite=True)

    def _on_commit_key(self, layer=None) -> None:
        user_action(self.owner.messages, self.commit)()

    def _overlap(self) -> OverlapRule:
        rule = self.overlap_combo.currentText()
        return "overwrite" if rule == "overwrite" else "keep"

    def _geometry(self, image: Image) -> ImageGeometry:
        return ImageGeometry.of(image, self.owner.channel_axis_combo.currentData())

    def annotations(
        self, image: Image, geometry: ImageGeometry
    ) -> tuple[Labels, ObjectAnnotations]:
        """The objects layer of `image` (created on first use) and its committed objects."""
        layer = committed_output(self.viewer, image, geometry)
        self.bind_commit_key(layer)
        annotations = self._annotations.get(layer)
        if annotations is None or annotations.labels is not layer.data:
            annotations = ObjectAnnotations(
                layer.data, feature_classes(layer), write=layer.data_setitem
            )
            self._annotations[layer] = annotations
        return layer, annotations

    def _show_change(self, layer: Labels, annotations: ObjectAnnotations, change: Change) -> str:
        """Mirror a change's classes into the layer's features; describe it."""
        layer.features = pd.DataFrame(annotations.features())
        layer.refresh()
        added = [i for i, name in change.classes_after.items() if name is not None]
        if added:
            layer.selected_label = max(added)
        ids = change.object_ids
        shown = ", ".join(map(str, ids[:5])) + (" …" if len(ids) > 5 else "")
        return f"object{'s' if len(ids) > 1 else ''} {shown}"

    # ------------------------------------------------------------------ preview and commit
    def object_request(self) -> ObjectRequest:
        """The current slice's objects: the widget's checked slice request, the clicks and
        boxes on that slice."""
        base = self.owner.slice_request()
        index = base.indices[0]
        points = find_output(self.viewer, "prompts", base.image, Points)
        xy, labels = (None, None)
        if points is not None and len(points.data):
            xy, labels = base.geometry.points_for_slice(points, index)
        box_layer = find_output(self.viewer, BOXES, base.image, Shapes)
        boxes = None if box_layer is None else boxes_for_slice(base.geometry, box_layer, index)
        prompts = object_prompts(xy, labels, boxes)
        text_guide = self.text_guide_check.isChecked()
        return ObjectRequest(base, self.class_name(), prompts, text_guide, self.prompt_version)

    def refresh(self) -> None:
        """After an edit of the clicks or boxes: preview the objects they give, or clear the
        preview when none is left on the slice (the class text alone waits for Preview)."""
        request = self.object_request()
        if any(prompt.has_user_prompt for prompt in request.prompts):
            self._start_preview(request)
            return
        self.preview = None
        layer = find_output(self.viewer, PREVIEW, request.slice.image, Labels)
        if layer is not None:
            show_preview(layer, request.index, None)

    def request_preview(self, then: Callable[[], None] | None = None) -> bool:
        """Segment the current object(s) in the background; `then` runs once it is shown."""
        return self._start_preview(self.object_request(), then)

    def _start_preview(
        self, request: ObjectRequest, then: Callable[[], None] | None = None
    ) -> bool:
        if not request.text_guide and not any(p.has_user_prompt for p in request.prompts):
            raise ValueError(
                "No click or box on this slice and the class text guide is off (Advanced): "
                "add a click or a box, or turn the text guide on."
            )

        def done(ok: bool) -> None:
            if then is not None:
                self.commit_pending = False  # `then` is that commit
            self.owner.on_job_done(ok)
            if ok and then is not None:
                user_action(self.owner.messages, then)()

        return self.jobs.start(
            preview_job,
            self.owner.session,
            request,
            on_event=lambda event: self._show_preview(request, event),
            on_done=done,
        )

    def _show_preview(self, request: ObjectRequest, event) -> None:
        if not isinstance(event, ObjectPreview):
            return
        self.preview = event
        layer = preview_output(self.viewer, request.slice.image, request.slice.geometry)
        self.bind_commit_key(layer)
        show_preview(layer, event.index, event.masks)
        if not event.masks.any():
            notify_info(
                f"The object is empty: no pixel of {event.class_name} above the mask "
                "threshold here; move the click or box, or lower the mask threshold."
            )

    def _current_preview(self, request: ObjectRequest) -> ObjectPreview | None:
        preview = self.preview
        if (
            preview is not None
            and preview.image == request.slice.image.name
            and preview.index == request.index
            and preview.class_name == request.class_name
            and preview.version == self.prompt_version
        ):
            return preview
        return None

    def commit(self) -> bool:
        """Commit the current object(s); when the prompts changed since the preview, segment
        them first. While a job runs, the commit waits for its end (`commit_pending`)."""
        if self.jobs.running:
            self.commit_pending = True
            notify_info("Committing when the current run ends.")
            return True
        request = self.object_request()
        preview = self._current_preview(request)
        if preview is None:
            return self._start_preview(request, then=self._commit_preview)
        self._commit_preview()
        return True

    def _commit_preview(self) -> None:
        preview = self.preview
        if preview is None:
            raise ValueError("Nothing to commit: no current object.")
        image = self.owner.require_image()
        if image.name != preview.image:
            raise ValueError("The image changed since the preview: press Preview again.")
        masks = [mask for mask in preview.masks if mask.any()]
        if not masks:
            raise ValueError(
                "The current object is empty: nothing to commit. Move the click or box, or "
                "lower the mask threshold (Advanced)."
            )
        geometry = self._geometry(image)
        layer, annotations = self.annotations(image, geometry)
        if len(masks) == 1:
            change = annotations.commit(
                preview.class_name, {preview.index: masks[0]}, overlap=self._overlap()
            )
        else:  # several boxes: several objects, one change (later ones on top, as shown)
            instances = np.zeros(masks[0].shape, dtype=np.int64)
            for number, mask in enumerate(masks, start=1):
                instances[mask] = number
            change = annotations.commit_instances(
                preview.class_name, {preview.index: instances}, overlap=self._overlap()
            )
        what = self._show_change(layer, annotations, change)
        self._clear_slice(image, geometry, preview.index)
        self.jobs.show_status(f"Committed {what} ({preview.class_name}).")

    def clear(self) -> None:
        """Drop the current slice's clicks and boxes, and the preview."""
        image = self.owner.require_image()
        geometry = self._geometry(image)
        self._clear_slice(image, geometry, geometry.current_index(image, self.viewer.dims.point))

    def _clear_slice(self, image: Image, geometry: ImageGeometry, index: tuple[int, ...]) -> None:
        for kind, role in ((Points, "prompts"), (Shapes, BOXES)):
            layer = find_output(self.viewer, role, image, kind)
            if layer is not None:
                remove_on_slice(geometry, layer, index)
        self.preview = None
        preview = find_output(self.viewer, PREVIEW, image, Labels)
        if preview is not None:
            show_preview(preview, index, None)

    def undo(self) -> None:
        """Revert the last change of the objects layer made through this widget."""
        image = self.owner.require_image()
        geometry = self._geometry(image)
        if find_output(self.viewer, COMMITTED, image, Labels, geometry.labels_shape) is None:
            raise ValueError("Nothing to undo: no object committed on this image yet.")
        layer, annotations = self.annotations(image, geometry)
        change = annotations.undo()
        if change is None:
            notify_info("Nothing to undo.")
            return
        what = self._show_change(layer, annotations, change)
        self.jobs.show_status(f"Undone: {what}.")

    # ------------------------------------------------------------------ all instances
    def segment_all(self) -> bool:
        """Commit every instance of the chosen class on this slice (in the background)."""
        request = self.owner.slice_request()
        class_name = self.class_name()
        return self.jobs.start(
            segment_all_job,
            self.owner.session,
            request,
            class_name,
            on_event=lambda event: self._commit_instances(request, class_name, event),
            on_done=self.owner.on_job_done,
        )

    def _commit_instances(self, request: SegmentRequest, class_name: str, event) -> None:
        if not isinstance(event, InstancesFromText):
            return
        if event.count == 0:
            notify_info(
                f"No {class_name} found on this slice above the mask threshold; try a lower "
                "mask threshold (Advanced)."
            )
            return
        layer, annotations = self.annotations(request.image, request.geometry)
        change = annotations.commit_instances(
            class_name, {request.indices[0]: event.labels}, overlap=self._overlap()
        )
        what = self._show_change(layer, annotations, change)
        self.jobs.show_status(f"Committed {what} ({class_name}).")

    # ------------------------------------------------------------------ propagation
    def propagate(self) -> bool:
        """Follow the selected committed object through the stack, in the background."""
        request = self.owner.slice_request()
        if not request.geometry.leading_shape:
            raise ValueError("Propagate follows an object through a stack; this image is 2D.")
        index = request.indices[0]
        if find_output(self.viewer, COMMITTED, request.image, Labels) is None:
            raise ValueError("Commit an object on this slice first, then propagate it.")
        layer, annotations = self.annotations(request.image, request.geometry)
        object_id = int(layer.selected_label)
        mask = np.asarray(layer.data[index]) == object_id
        if object_id not in annotations.classes or not mask.any():
            raise ValueError(
                f"Label {object_id} of {layer.name!r} is no committed object on this slice: "
                "select the object to propagate (its label in the layer's controls, or the "
                "picker), or commit one here first."
            )
        class_name = annotations.classes[object_id]
        config = self.propagation_config()
        self._propagated = []
        return self.jobs.start(
            propagate_job,
            self.owner.session,
            request,
            mask,
            class_name,
            config,
            on_event=self._on_propagation_event,
            on_done=lambda ok: self._commit_propagation(ok, request, object_id, class_name),
        )

    def _on_propagation_event(self, event) -> None:
        if isinstance(event, PropagationStep):
            if event.accepted:
                self._propagated.append(event)
        elif isinstance(event, PropagationResult):
            self._stop_reasons = "; ".join(event.stopped.values())

    def _commit_propagation(
        self, ok: bool, request: SegmentRequest, object_id: int, class_name: str
    ) -> None:
        """Commit the accepted slices (also of a cancelled or failed run) under the object's
        id."""
        steps, self._propagated = self._propagated, []
        stops, self._stop_reasons = self._stop_reasons, ""
        self.owner.on_job_done(ok)
        if not stops:
            stops = (
                "stopped by an error (see the message panel)" if self.jobs.failed else "cancelled"
            )
        if not steps:
            if not self.jobs.failed:  # a failure's status line stays
                self.jobs.show_status(f"Object {object_id} not propagated: {stops}.")
            return
        *outer, _ = request.indices[0]
        masks = {(*outer, step.position): step.mask for step in steps if step.mask is not None}
        layer, annotations = self.annotations(request.image, request.geometry)
        change = annotations.commit(class_name, masks, object_id=object_id, overlap=self._overlap())
        self._show_change(layer, annotations, change)
        positions = sorted(step.position for step in steps)
        self.jobs.show_status(
            f"Object {object_id} propagated to {len(positions)} slice(s) "
            f"({positions[0]}-{positions[-1]}); {stops}."
        )
