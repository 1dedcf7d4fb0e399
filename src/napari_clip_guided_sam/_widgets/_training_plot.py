"""A small live plot for the training widget: training loss per step, validation mIoU per epoch.

Drawn with QPainter (napari does not bring matplotlib): two polylines over a shared step axis,
the loss scaled to its own range (left), the mIoU on a fixed 0-1 scale (right).
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOR = QColor(66, 165, 245)  # blue
MIOU_COLOR = QColor(255, 167, 38)  # orange
MARGIN = 6
TEXT_HEIGHT = 16


class TrainingPlot(QWidget):
    """Live curves of a run; `add_loss(step, loss)`, `add_miou(step, miou)`, `clear()`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.losses: list[tuple[int, float]] = []
        self.mious: list[tuple[int, float]] = []
        self.total_steps = 0
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Blue: training loss per step. Orange: validation mIoU per epoch (0-1).")

    def clear(self, total_steps: int = 0) -> None:
        self.losses, self.mious, self.total_steps = [], [], total_steps
        self.update()

    def add_loss(self, step: int, loss: float, total_steps: int | None = None) -> None:
        self.losses.append((step, float(loss)))
        if total_steps is not None:
            self.total_steps = total_steps
        self.update()

    def add_miou(self, step: int, miou: float) -> None:
        self.mious.append((step, float(miou)))
        self.update()

    # ------------------------------------------------------------------ drawing
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_color = self.palette().color(self.foregroundRole())
        area = QRectF(self.rect()).adjusted(MARGIN, MARGIN + TEXT_HEIGHT, -MARGIN, -MARGIN)
        painter.setPen(QPen(text_color, 1))
        painter.drawRect(area)
        painter.drawText(
            QRectF(MARGIN, 0, self.width() - 2 * MARGIN, TEXT_HEIGHT + MARGIN),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            self._caption(),
        )
        last_step = max([self.total_steps, *(s for s, _ in self.losses + self.mious), 1])
        if self.losses:
            values = [v for _, v in self.losses]
            low, high = min(values), max(values)
            self._draw(painter, area, self.losses, last_step, low, high, LOSS_COLOR)
        if self.mious:
            self._draw(painter, area, self.mious, last_step, 0.0, 1.0, MIOU_COLOR, dots=True)
        painter.end()

    def _caption(self) -> str:
        parts = []
        if self.losses:
            parts.append(f"loss {self.losses[-1][1]:.3f}")
        if self.mious:
            parts.append(f"val mIoU {self.mious[-1][1]:.3f}")
        return "   ".join(parts) or "loss (blue), validation mIoU (orange)"

    @staticmethod
    def _draw(painter, area, points, last_step, low, high, color, dots=False) -> None:
        span = (high - low) or 1.0

        def at(step: int, value: float) -> QPointF:
            x = area.left() + area.width() * (step / last_step)
            y = area.bottom() - area.height() * ((value - low) / span)
            return QPointF(x, y)

        polygon = QPolygonF([at(s, v) for s, v in points])
        painter.setPen(QPen(color, 2))
        painter.drawPolyline(polygon)
        if dots or len(points) == 1:
            painter.setBrush(color)
            for point in polygon:
                painter.drawEllipse(point, 3, 3)
