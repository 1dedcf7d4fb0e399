"""Where the training data come from: (image, labels) layer pairs or folders, and the classes.

The pairs are read from the viewer when training starts (annotated slices only, copied); a
label count, refreshed shortly after each paint stroke, says how many slices are annotated.
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..data.class_map import ClassMap, parse_class_map
from ..data.datasets import SliceDataset
from ..training.export import AnnotatedStack, annotated_pairs, training_dataset
from ._common import guarded, notify_info, on_click
from ._forms import browse_row, choose_folder, form_box, form_panel, refill
from ._layers import full_resolution, is_plugin_output, layer_named

LAYERS, FOLDERS = "layers in the viewer", "folders on disk"
PAIR_SEPARATOR = "  ←  "  # between image and labels names in the list of pairs


class TrainingSources(QWidget):
    """The "Training data" and "Classes" boxes: what to train on, as a dataset."""

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self._watched_labels: weakref.WeakSet = weakref.WeakSet()
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(guarded(self.update_count))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._data_box())
        layout.addWidget(self._class_box())

    # ------------------------------------------------------------------ layout
    def _data_box(self) -> QGroupBox:
        self.source_combo = QComboBox()
        self.source_combo.addItems([LAYERS, FOLDERS])
        self.source_combo.currentTextChanged.connect(guarded(self._on_source_changed))
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        for combo in (self.image_combo, self.labels_combo):
            combo.currentIndexChanged.connect(self.schedule_count)
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
        self.images_dir_edit, images_row = self._folder_row("images folder")
        self.labels_dir_edit, labels_row = self._folder_row("label images, same names")
        self.label_suffix_edit = QLineEdit()
        self.label_suffix_edit.setPlaceholderText("e.g. _labels for a.png <-> a_labels.tif")
        self.layers_panel = form_panel(
            [
                ("Image layer", self.image_combo),
                ("Labels layer", self.labels_combo),
                ("", pair_buttons),
                ("Pairs", self.pair_list),
                ("", self.count_label),
            ]
        )
        self.folders_panel = form_panel(
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

    def _folder_row(self, placeholder: str) -> tuple[QLineEdit, QWidget]:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        return edit, browse_row(edit, lambda: choose_folder(self, edit, "Choose a folder"))

    def _class_box(self) -> QGroupBox:
        self.one_class_check = QCheckBox("All labels are one class (e.g. instance labels)")
        self.one_class_check.setChecked(True)
        self.one_class_check.toggled.connect(guarded(self._on_one_class_toggled))
        self.class_name_edit = QLineEdit()
        self.class_name_edit.setPlaceholderText("e.g. nucleus")
        self.class_map_edit = QLineEdit()
        self.class_map_edit.setPlaceholderText("label value = class, e.g. 1=nucleus, 2=cell")
        self.class_map_edit.setEnabled(False)
        return form_box(
            "Classes",
            [
                ("", self.one_class_check),
                ("Class name", self.class_name_edit),
                ("Class map", self.class_map_edit),
            ],
        )

    # ------------------------------------------------------------------ choices
    def update_layer_choices(self) -> list[str]:
        """Offer the viewer's (non-plugin) layers; returns the image names."""
        images = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if _is_user_layer(layer, Labels)]
        refill(self.image_combo, images)
        refill(self.labels_combo, labels)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer not in self._watched_labels:
                layer.events.paint.connect(self.schedule_count)
                layer.events.data.connect(self.schedule_count)
                self._watched_labels.add(layer)
        self._count_timer.start()
        return images

    def _on_source_changed(self, source: str) -> None:
        self.layers_panel.setVisible(source == LAYERS)
        self.folders_panel.setVisible(source != LAYERS)

    def _on_one_class_toggled(self, checked: bool) -> None:
        self.class_name_edit.setEnabled(checked)
        self.class_map_edit.setEnabled(not checked)

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
        self._count_timer.start()

    def _remove_pair(self) -> None:
        for item in self.pair_list.selectedItems():
            self.pair_list.takeItem(self.pair_list.row(item))
        self._count_timer.start()

    def pair_names(self) -> list[tuple[str, str]]:
        """(image, labels) layer names to train on: the list, else the pair chosen."""
        if self.pair_list.count():
            texts = [self.pair_list.item(i).text() for i in range(self.pair_list.count())]
            return [tuple(text.split(PAIR_SEPARATOR)) for text in texts]
        return [(self.image_combo.currentText(), self.labels_combo.currentText())]

    def update_count(self) -> None:
        """Show how many slices are annotated (only those are used)."""
        parts = []
        for _, labels_name in self.pair_names():
            layer = layer_named(self.viewer, labels_name, Labels)
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
    return isinstance(layer, kind) and not is_plugin_output(layer)
