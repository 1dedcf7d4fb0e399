"""Where the training data come from: (image, labels) layer pairs or folders, and the classes.

The pairs are read from the viewer when training starts (annotated slices only, copied); a
label count, refreshed shortly after each paint stroke, says how many slices are annotated
(labels that do not fit their image count as none). Class names go through the model's
shared check (`model.guide.validate_class_names`), as on the command line. The class rows
(Advanced) give what `--class`, `--class-map`, `--background none` and `--ignore-index` give
the CLI, and build the `ClassMap` the same way. A labels layer with a class table in its
features (the segment widget's committed objects) fills the class inputs when it is chosen
and whenever its table changes.
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..data.class_map import ClassMap, format_class_map, parse_class_map
from ..data.datasets import SliceDataset
from ..model.guide import validate_class_names
from ..training.export import AnnotatedStack, annotated_pairs, training_dataset
from ._common import guarded, notify_info
from ._forms import browse_row, choose_folder, combo, form_panel, int_spin, line_edit, refill
from ._layers import full_resolution, is_plugin_output, layer_named
from ._object_layers import feature_class_map, is_committed_objects
from ._panels import AdvancedSection, text_label

LAYERS, FOLDERS = "layers in the viewer", "folders on disk"
PAIR_SEPARATOR = "  ←  "  # between image and labels names in the list of pairs
PAIR_ROWS_SHOWN = 4  # the list of pairs grows up to this many rows, then scrolls
NO_IGNORE_VALUE = -1  # the ignore value box's "none"


class TrainingSources(QWidget):
    """The "Training data" box (what to train on, as a dataset) and its Advanced rows."""

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self._watched_labels: weakref.WeakSet = weakref.WeakSet()
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(guarded(self.update_count))
        self._build_class_inputs()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._data_box())

    # ------------------------------------------------------------------ layout
    def _data_box(self) -> QGroupBox:
        self.source_combo = combo(
            [LAYERS, FOLDERS],
            "Train on layers open in napari (an image and the labels you painted on it), "
            "or on folders of image files and label files paired by name (as the CLI does).",
        )
        self.source_combo.currentTextChanged.connect(guarded(self._on_source_changed))
        self.image_combo = combo([], "The image whose objects you annotated")
        self.labels_combo = combo(
            [],
            "The labels layer painted on that image (same size and slices); 0 is "
            "background (unless label 0 is a class, see Advanced), every other value an "
            "object. Only slices with a nonzero label are used.",
        )
        for box in (self.image_combo, self.labels_combo):
            box.currentIndexChanged.connect(self.schedule_count)
        self.labels_combo.currentTextChanged.connect(guarded(self.fill_classes_from_layer))
        self.add_pair_button = QPushButton("Add pair")
        self.add_pair_button.setToolTip(
            "Add the chosen image and labels to the list, to train on several images at once"
        )
        self.remove_pair_button = QPushButton("Remove")
        self.remove_pair_button.setToolTip("Remove the selected pair from the list")
        self.remove_pair_button.clicked.connect(guarded(lambda *_: self._remove_pair()))
        self.pair_list = QListWidget()
        self.pair_list.setToolTip(
            "The (image, labels) pairs to train on. Empty: the pair chosen above."
        )
        self.pair_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.pair_list.setVisible(False)
        self.count_label = text_label(
            "",
            "Only slices with a nonzero label are used for training; labels of another "
            "shape than their image count as none.",
        )
        pair_buttons = QHBoxLayout()
        pair_buttons.addWidget(self.add_pair_button)
        pair_buttons.addWidget(self.remove_pair_button)
        self.images_dir_edit, images_row = self._folder_row(
            "images folder", "The folder of images to train on"
        )
        self.labels_dir_edit, labels_row = self._folder_row(
            "label images, same names",
            "The folder of label images, one per image, paired by file name",
        )
        self.label_suffix_edit = line_edit(
            "If label files carry a suffix: e.g. '_labels' pairs a.png with a_labels.tif.",
            "e.g. _labels for a.png <-> a_labels.tif",
        )
        self.layers_panel = form_panel(
            [
                ("Image layer", self.image_combo),
                ("Labels layer", self.labels_combo),
                ("", pair_buttons),
            ]
        )
        self.layers_panel.layout().addRow(self.pair_list)
        self.layers_panel.layout().addRow(self.count_label)
        self.folders_panel = form_panel(
            [
                ("Images folder", images_row),
                ("Labels folder", labels_row),
                ("Label suffix", self.label_suffix_edit),
            ]
        )
        box = QGroupBox("Training data")
        layout = QVBoxLayout(box)
        layout.addWidget(
            form_panel([("Source", self.source_combo), ("Class name", self.class_name_edit)])
        )
        layout.addWidget(self.layers_panel)
        layout.addWidget(self.folders_panel)
        self._on_source_changed(LAYERS)
        return box

    def _folder_row(self, placeholder: str, tip: str):
        edit = line_edit(tip, placeholder)
        return edit, browse_row(edit, lambda: choose_folder(self, edit, tip), tip)

    def _build_class_inputs(self) -> None:
        self.class_name_edit = line_edit(
            "What the labelled objects are, in plain words (e.g. 'nucleus'): the name you "
            "will type to segment them. Every nonzero label is this class.",
            "e.g. nucleus",
        )
        self.one_class_check = QCheckBox("All labels are one class")
        self.one_class_check.setToolTip(
            "On: every nonzero label value is the class named above (right for instance "
            "labels). Off: give each label value its class in the class map."
        )
        self.one_class_check.setChecked(True)
        self.one_class_check.toggled.connect(guarded(self._on_one_class_toggled))
        self.class_map_edit = line_edit(
            "Several classes: which label value is which class, e.g. '1=nucleus, 2=cell'. "
            "Label values not in the map are refused.",
            "e.g. 1=nucleus, 2=cell",
        )
        self.class_map_edit.setEnabled(False)
        self.no_background_check = QCheckBox("Label 0 is a class (no background)")
        self.no_background_check.setToolTip(
            "For fully labelled maps, where every pixel belongs to a class and 0 is one of "
            "them (e.g. 0=pore, 1=clay, 2=quartz): give label 0 its class in the class map. "
            "Off: 0 is background. Same as --background none."
        )
        self.no_background_check.setEnabled(False)
        self.ignore_spin = int_spin(
            NO_IGNORE_VALUE,
            NO_IGNORE_VALUE,
            2**31 - 1,
            "The label value of pixels nobody annotated (e.g. 255): they are left out of "
            "training and of the scores. 'none': every pixel counts. Same as --ignore-index.",
        )
        self.ignore_spin.setSpecialValueText("none")

    def add_advanced_rows(self, advanced: AdvancedSection) -> None:
        """Put the class inputs (several classes, label 0, ignore value) into the widget's
        Advanced section."""
        advanced.add_row("", self.one_class_check)
        advanced.add_row("Class map", self.class_map_edit)
        advanced.add_row("", self.no_background_check)
        advanced.add_row("Ignore value", self.ignore_spin)

    # ------------------------------------------------------------------ choices
    def update_layer_choices(self) -> list[str]:
        """Offer the viewer's (non-plugin) layers; returns the image names."""
        images = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Labels)]
        chosen = self.labels_combo.currentText()
        refill(self.image_combo, images)
        refill(self.labels_combo, labels)
        if self.labels_combo.currentText() != chosen:  # refill changes it silently
            self.fill_classes_from_layer()
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer not in self._watched_labels:
                layer.events.paint.connect(self.schedule_count)
                layer.events.data.connect(self.schedule_count)
                layer.events.features.connect(self._on_features_changed)
                self._watched_labels.add(layer)
        self._count_timer.start()
        return images

    def fill_classes_from_layer(self, *args) -> None:
        """Take the class names of the chosen labels layer's class table, if it has one."""
        layer = layer_named(self.viewer, self.labels_combo.currentText(), Labels)
        class_map = None if layer is None else feature_class_map(layer)
        if class_map is None:
            return
        self.one_class_check.setChecked(class_map.is_single_class)
        if class_map.is_single_class:
            self.class_name_edit.setText(class_map.class_names[0])
        else:
            self.class_map_edit.setText(format_class_map(class_map))

    def _on_features_changed(self, event=None) -> None:
        try:
            if getattr(event, "source", None) is layer_named(
                self.viewer, self.labels_combo.currentText(), Labels
            ):
                guarded(self.fill_classes_from_layer)()
        except RuntimeError:  # the widget was deleted; the layer outlived it
            pass

    def _on_source_changed(self, source: str) -> None:
        self.layers_panel.setVisible(source == LAYERS)
        self.folders_panel.setVisible(source != LAYERS)

    def _on_one_class_toggled(self, checked: bool) -> None:
        self.class_name_edit.setEnabled(checked)
        self.class_map_edit.setEnabled(not checked)
        self.no_background_check.setEnabled(not checked)  # one class: 0 is background
        self.class_name_edit.setPlaceholderText(
            "e.g. nucleus" if checked else "see the class map (Advanced)"
        )

    def schedule_count(self, *args) -> None:
        try:
            self._count_timer.start()
        except RuntimeError:  # the widget was deleted; the layer outlived it
            pass

    def add_pair(self) -> None:
        """Add the chosen (image, labels) pair to the list of pairs (checked first)."""
        stack = self.stack(self.image_combo.currentText(), self.labels_combo.currentText())
        stack.check()
        text = self.image_combo.currentText() + PAIR_SEPARATOR + self.labels_combo.currentText()
        if text not in [self.pair_list.item(i).text() for i in range(self.pair_list.count())]:
            self.pair_list.addItem(text)
        self._fit_pair_list()
        self._count_timer.start()

    def _remove_pair(self) -> None:
        for item in self.pair_list.selectedItems():
            self.pair_list.takeItem(self.pair_list.row(item))
        self._fit_pair_list()
        self._count_timer.start()

    def _fit_pair_list(self) -> None:
        """Show the list only when it has pairs, as tall as its rows (up to a few)."""
        count = self.pair_list.count()
        self.pair_list.setVisible(count > 0)
        if count:
            rows = min(count, PAIR_ROWS_SHOWN)
            height = self.pair_list.sizeHintForRow(0) * rows + 2 * self.pair_list.frameWidth()
            self.pair_list.setFixedHeight(height + 4)

    def pair_names(self) -> list[tuple[str, str]]:
        """(image, labels) layer names to train on: the list, else the pair chosen."""
        if self.pair_list.count():
            texts = [self.pair_list.item(i).text() for i in range(self.pair_list.count())]
            return [tuple(text.split(PAIR_SEPARATOR)) for text in texts]
        return [(self.image_combo.currentText(), self.labels_combo.currentText())]

    def update_count(self) -> None:
        """Show how many slices are annotated (only those are used; labels that do not fit
        their image count as none)."""
        parts = []
        for image_name, labels_name in self.pair_names():
            labels_layer = layer_named(self.viewer, labels_name, Labels)
            if labels_layer is None:
                continue
            labels = np.asarray(full_resolution(labels_layer))
            total = int(np.prod(labels.shape[:-2], dtype=np.int64)) if labels.ndim >= 2 else 0
            image_layer = layer_named(self.viewer, image_name, Image)
            problem = None
            if image_layer is not None:
                stack = AnnotatedStack(
                    image_layer.name, full_resolution(image_layer), labels, bool(image_layer.rgb)
                )
                problem = stack.shape_problem()
            if problem is not None or labels.ndim < 2:
                parts.append(f"{labels_name}: 0 of {total} slice(s) usable. {problem or ''}")
                continue
            flat = labels.reshape(-1, *labels.shape[-2:])
            annotated = int(flat.any(axis=(1, 2)).sum())
            parts.append(f"{labels_name}: {annotated} of {total} slice(s) annotated")
        self.count_label.setText("\n".join(parts))

    # ------------------------------------------------------------------ gathering input
    def required_layer(self, name: str, kind: type, what: str):
        """The `kind` layer called `name` (ValueError naming `what` if there is none)."""
        layer = layer_named(self.viewer, name, kind)
        if layer is None:
            raise ValueError(
                f"No {what} layer chosen: open an image and a labels layer drawn on it (or use "
                "folders on disk)."
            )
        return layer

    def stack(self, image_name: str, labels_name: str) -> AnnotatedStack:
        """The (image, labels) layer pair as an annotated stack (ValueError if missing)."""
        image = self.required_layer(image_name, Image, "image")
        labels = self.required_layer(labels_name, Labels, "labels")
        data = full_resolution(image)
        label_data = full_resolution(labels)
        return AnnotatedStack(image.name, data, label_data, rgb=bool(image.rgb))

    def stacks(self) -> list[AnnotatedStack]:
        return [self.stack(image, labels) for image, labels in self.pair_names()]

    @property
    def ignore_index(self) -> int | None:
        """The ignore value chosen, or None."""
        value = self.ignore_spin.value()
        return None if value == NO_IGNORE_VALUE else value

    def class_map(self) -> ClassMap:
        """The class map typed in the widget (raises ValueError with a message)."""
        if self.one_class_check.isChecked():
            name = " ".join(self.class_name_edit.text().split())
            if not name:
                raise ValueError("Type a class name, e.g. 'nucleus' (what the labels show).")
            validate_class_names([name])
            return ClassMap.single_class(name, ignore_index=self.ignore_index)
        class_map = parse_class_map(
            self.class_map_edit.text(),
            background=not self.no_background_check.isChecked(),
            ignore_index=self.ignore_index,
        )
        validate_class_names(list(class_map.class_names))
        return class_map

    def dataset(self) -> tuple[SliceDataset, str]:
        """The training data and a one-line description (same code path as the CLI)."""
        class_map = self.class_map()
        if self.source_combo.currentText() == FOLDERS:
            return self._folder_dataset(class_map)
        stacks = self.stacks()
        pairs = annotated_pairs(stacks)
        total = sum(stack.n_slices for stack in stacks)
        return training_dataset(pairs, class_map), f"{len(pairs)} annotated of {total} slice(s)"

    def _folder_dataset(self, class_map: ClassMap) -> tuple[SliceDataset, str]:
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


def _is_user_layer(layer, kind: type) -> bool:
    """A layer the user made, or the segment widget's committed objects (annotations)."""
    return isinstance(layer, kind) and (not is_plugin_output(layer) or is_committed_objects(layer))
