"""Small Qt form pieces shared by the plugin's widgets: spin boxes, browse rows, form boxes."""

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
    edit: QLineEdit, browse: Callable[[], None], text: str = "…", width: int | None = 32
) -> QWidget:
    """A path field with a button beside it that runs `browse`."""
    button = QPushButton(text)
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


def choose_checkpoint(parent: QWidget, edit: QLineEdit) -> str:
    """Ask for a fine-tuned checkpoint file and put it in `edit`; '' if none."""
    path, _ = QFileDialog.getOpenFileName(parent, "Fine-tuned checkpoint", "", CHECKPOINT_FILTER)
    if path:
        edit.setText(path)
    return path


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
