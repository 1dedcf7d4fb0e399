"""The frame of every dock widget of the plugin: a scrolling panel with a remembered
"Advanced" section.

A dock widget's content sits in a scroll area, so the widget fits any screen (a window
manager cannot shrink a window below its widgets' minimum size). The primary flow comes
first, so its actions are visible without scrolling; settings most users never touch
collapse into an "Advanced" section whose open or closed state is remembered (QSettings of
the plugin, per widget).
"""

from __future__ import annotations

from qtpy.QtCore import QSettings, QSize, Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

ORGANIZATION = APPLICATION = "napari-clip-guided-sam"
MAX_DOCK_WIDTH = 420  # the widest minimum width a dock widget may ask for (px)
MIN_DOCK_HEIGHT = 160  # the content scrolls below this
SCROLL_BAR_ALLOWANCE = 4  # px beyond the style's scroll bar width (napari's theme is wider)


def text_label(text: str = "", tip: str = "") -> QLabel:
    """A wrapped, selectable line of text that never widens its dock (a word longer than
    the dock, such as a long path, is cut at the edge instead)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setMinimumWidth(1)  # layouts then ignore the longest word's width
    if tip:
        label.setToolTip(tip)
    return label


def stored_settings() -> QSettings:
    """The plugin's remembered widget settings (an INI file in the user's config folder;
    tests point `QSettings.setPath` for the INI format at a temporary folder)."""
    return QSettings(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
    )


class DockPanel(QWidget):
    """A dock widget whose `content` scrolls; subclasses fill `content_layout`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.content = QWidget()
        self.content_layout = QVBoxLayout(self.content)
        self.content_layout.setContentsMargins(6, 6, 6, 6)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll.setWidget(self.content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)

    def finish(self) -> None:
        """Push the content to the top (call after adding the parts)."""
        self.content_layout.addStretch(1)

    def minimumSizeHint(self) -> QSize:
        """As narrow as the content allows (no sideways scrolling), as low as a few rows:
        the content scrolls vertically."""
        return QSize(self._content_width(self.content.minimumSizeHint()), MIN_DOCK_HEIGHT)

    def sizeHint(self) -> QSize:
        hint = self.content.sizeHint()
        return QSize(self._content_width(hint), hint.height())

    def _content_width(self, hint: QSize) -> int:
        """`hint`'s width plus room for a vertical scroll bar (themes draw it wider than its
        size hint) and the frame."""
        bar = max(
            self.scroll.verticalScrollBar().sizeHint().width(),
            self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent),
        )
        return hint.width() + bar + 2 * self.scroll.frameWidth() + SCROLL_BAR_ALLOWANCE


class AdvancedSection(QWidget):
    """A collapsible form ("Advanced"), closed by default; its state is remembered under
    `key` (one key per widget)."""

    def __init__(self, key: str, title: str = "Advanced", parent: QWidget | None = None):
        super().__init__(parent)
        self._key = f"{key}/advanced_open"
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.setToolTip(
            "Settings most people never change: precision, device, thresholds, seeds… "
            "Click to show or hide them; the widget remembers your choice."
        )
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(12, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        opened = stored_settings().value(self._key, False, type=bool)
        self.toggle.setChecked(bool(opened))
        self._show(bool(opened))
        self.toggle.toggled.connect(self._on_toggled)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)

    def add_row(self, label: str, widget) -> None:
        """A (label, widget or layout) row; an empty label spans the widget."""
        if label:
            self.form.addRow(label, widget)
        else:
            self.form.addRow(widget)

    def add_note(self, text: str) -> QLabel:
        """A small explanatory line under the previous row."""
        note = text_label(text)
        note.setStyleSheet("font-size: small;")
        self.form.addRow(note)
        return note

    def _on_toggled(self, expanded: bool) -> None:
        self._show(expanded)
        stored_settings().setValue(self._key, expanded)

    def _show(self, expanded: bool) -> None:
        arrow = Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        self.toggle.setArrowType(arrow)
        self.body.setVisible(expanded)
