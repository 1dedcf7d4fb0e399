"""The message box of a widget: the last error (or note) stays readable in the panel.

A notification toast disappears and napari cuts it to one line; the panel keeps the whole
message, selectable, until the user's next action, with the technical part (exception type
and traceback) behind a "Details" toggle. A widget can register remedies: buttons shown
with an error of a given type (e.g. "Use the tiny preset" when base weights are missing).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QTextOption
from qtpy.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

ERROR, NOTE = "Error", "Note"
ERROR_COLOR = "#e57373"  # readable on napari's dark and light themes
MAX_TEXT_HEIGHT = 240  # px; a longer message scrolls inside the panel
MAX_DETAILS_HEIGHT = 160


class FittedText(QPlainTextEdit):
    """Read-only, selectable text as tall as its lines (up to `max_height`), wrapped at the
    widget's width even inside long words (URLs, hashes), so it never widens the dock."""

    def __init__(self, max_height: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.max_height = max_height
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def _fit(self, *_) -> None:
        lines = self.document().documentLayout().documentSize().height()  # in lines
        line_height = self.fontMetrics().lineSpacing()
        margins = 2 * (self.document().documentMargin() + self.frameWidth()) + 2
        self.setFixedHeight(int(min(self.max_height, lines * line_height + margins)))

    def minimumSizeHint(self) -> QSize:
        return QSize(60, super().minimumSizeHint().height())


def error_message(error: BaseException) -> str:
    """The whole user-facing message of an exception."""
    text = str(error).strip()
    if isinstance(error, MemoryError | KeyboardInterrupt) or not text:
        return f"{type(error).__name__}: {text or 'no details'}"
    return text


def first_line(text: str, limit: int = 120) -> str:
    """The first line of a message, shortened to `limit` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def technical_details(error: BaseException) -> str:
    """The exception's type and traceback (for a bug report)."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).strip()


@dataclass(frozen=True)
class Remedy:
    """A button offered with errors of `kind`."""

    kind: type[BaseException]
    label: str
    action: Callable[[], object]
    tip: str = ""


class MessagePanel(QFrame):
    """The last error or note of a widget (hidden when there is none)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.kind = ""
        self.title = QLabel()
        self.text = FittedText(MAX_TEXT_HEIGHT)
        self.text.setToolTip("The whole message: select the text to copy it")
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show the technical details (for a bug report)")
        self.details_button.toggled.connect(self._show_details)
        self.close_button = QToolButton()
        self.close_button.setText("Dismiss")
        self.close_button.setToolTip("Hide this message")
        self.close_button.clicked.connect(self.clear)
        self.details = FittedText(MAX_DETAILS_HEIGHT)
        self.details.setToolTip("The exception and where it happened")
        self.remedy_row = QHBoxLayout()
        self.remedy_row.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.details_button)
        top.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addLayout(self.remedy_row)
        layout.addWidget(self.text)
        layout.addWidget(self.details)
        self._remedies: list[Remedy] = []
        self._remedy_buttons: list[QPushButton] = []
        self.clear()

    @property
    def message(self) -> str:
        """The text shown (empty when there is none)."""
        return self.text.toPlainText()

    def add_remedy(
        self, kind: type[BaseException], label: str, action: Callable[[], object], tip: str = ""
    ) -> None:
        """Offer a button running `action` with every error of type `kind`."""
        self._remedies.append(Remedy(kind, label, action, tip))

    def show_error(self, error: BaseException | str) -> None:
        """Keep `error` readable in the panel (with details and remedies for exceptions)."""
        if isinstance(error, BaseException):
            self._show(ERROR, error_message(error), technical_details(error))
            self._offer([r for r in self._remedies if isinstance(error, r.kind)])
        else:
            self._show(ERROR, str(error), "")

    def show_note(self, text: str) -> None:
        """A message that is not an error (e.g. why a run has no validation)."""
        self._show(NOTE, text, "")

    def clear(self) -> None:
        """Hide the message (at the user's next action)."""
        self.kind = ""
        self.text.setPlainText("")
        self.details.setPlainText("")
        self._offer([])
        self.setVisible(False)

    # ------------------------------------------------------------------ internals
    def _show(self, kind: str, text: str, details: str) -> None:
        self.kind = kind
        color = f"color: {ERROR_COLOR}; " if kind == ERROR else ""
        self.title.setStyleSheet(f"{color}font-weight: bold;")
        self.title.setText(kind)
        self.text.setPlainText(text)
        self.details.setPlainText(details)
        self.details_button.setVisible(bool(details))
        self.details_button.setChecked(False)
        self._show_details(False)
        self.setVisible(True)

    def _show_details(self, shown: bool) -> None:
        self.details.setVisible(shown and bool(self.details.toPlainText()))

    def _offer(self, remedies: list[Remedy]) -> None:
        for button in self._remedy_buttons:
            self.remedy_row.removeWidget(button)
            button.deleteLater()
        self._remedy_buttons = []
        for remedy in remedies:
            button = QPushButton(remedy.label)
            button.setToolTip(remedy.tip or remedy.label)
            button.clicked.connect(lambda *_, action=remedy.action: self._apply(action))
            self.remedy_row.addWidget(button)
            self._remedy_buttons.append(button)

    def _apply(self, action: Callable[[], object]) -> None:
        self.clear()
        action()
