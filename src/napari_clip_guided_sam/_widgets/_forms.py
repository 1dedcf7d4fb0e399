"""Small Qt form pieces shared by the plugin's widgets: inputs (each with the tooltip a
biologist reads to know what it changes), browse rows, form boxes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ._common import on_click

CHECKPOINT_FILTER = "Checkpoints (*.safetensors);;All files (*)"
WEIGHTS_FILTER = "SAM weights (*.pth *.pt *.safetensors);;All files (*)"
MIN_COMBO_CHARACTERS = 12  # long layer names must not widen the dock


def combo(items: list[str], tip: str) -> QComboBox:
    """A drop-down list that stays narrow whatever its items."""
    box = QComboBox()
    box.addItems(items)
    box.setToolTip(tip)
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(MIN_COMBO_CHARACTERS)
    return box


def line_edit(tip: str, placeholder: str = "", text: str = "") -> QLineEdit:
    edit = QLineEdit(text)
    edit.setPlaceholderText(placeholder)
    edit.setToolTip(tip)
    return edit


def int_spin(value: int, low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def double_spin(value: float, low: float, high: float, tip: str) -> QDoubleSpinBox:
    """A spin box of two decimals stepping by 0.05 (thresholds, fractions)."""
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def non_negative_number(text: str, what: str) -> float:
    """A typed number such as a learning rate (ValueError with a message otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number like 1e-4, got {text!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative number, got {text!r}.")
    return value


def refill(combo: QComboBox, names: list[str]) -> None:
    """Replace a combo's items, keeping the current choice if it is still there (silently)."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)


# ---------------------------------------------------------------------------- paths
def browse_row(
    edit: QLineEdit,
    browse: Callable[[], None],
    tip: str = "Choose in a file dialog",
    text: str = "…",
    width: int | None = 32,
) -> QWidget:
    """A path field with a button beside it that runs `browse`."""
    button = QPushButton(text)
    button.setToolTip(tip)
    if width is not None:
        button.setMaximumWidth(width)
    button.clicked.connect(on_click(browse))
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


def choose_folder(parent: QWidget, edit: QLineEdit, title: str) -> str:
    """Ask for a folder (starting at the field's path) and put it in `edit`; '' if none."""
    folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
    if folder:
        edit.setText(folder)
    return folder


def choose_file(parent: QWidget, edit: QLineEdit, title: str, filters: str) -> str:
    """Ask for a file (starting at the field's folder) and put it in `edit`; '' if none."""
    path, _ = QFileDialog.getOpenFileName(parent, title, edit.text(), filters)
    if path:
        edit.setText(path)
    return path


def choose_checkpoint(parent: QWidget, edit: QLineEdit) -> str:
    """Ask for a fine-tuned checkpoint file and put it in `edit`; '' if none."""
    return choose_file(parent, edit, "Fine-tuned checkpoint", CHECKPOINT_FILTER)


# ---------------------------------------------------------------------------- forms
def form_box(title: str, rows: list) -> QGroupBox:
    """A titled group of (label, widget or layout) rows."""
    box = QGroupBox(title)
    _add_rows(QFormLayout(box), rows)
    return box


def form_panel(rows: list) -> QWidget:
    """Untitled, borderless (label, widget or layout) rows, to show or hide as one."""
    panel = QWidget()
    form = QFormLayout(panel)
    form.setContentsMargins(0, 0, 0, 0)
    _add_rows(form, rows)
    return panel


def _add_rows(form: QFormLayout, rows: list) -> None:
    for label, widget in rows:
        form.addRow(label, widget)
