"""Event-loop responsiveness probe: how late a periodic QTimer fires while work runs elsewhere.

A timer ticks every `interval_ms` on the GUI thread; each tick records how much later than
planned it ran. While training runs in a worker, large delays would mean the viewer stutters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qtpy.QtCore import QObject, Qt, QTimer


@dataclass(frozen=True)
class ProbeSummary:
    """Lateness of the probe's ticks, in milliseconds."""

    ticks: int
    mean_ms: float
    max_ms: float
    p95_ms: float

    def describe(self) -> str:
        if not self.ticks:
            return "event-loop delay: no measurement"
        return (
            f"event-loop delay over {self.ticks} ticks: mean {self.mean_ms:.1f} ms, "
            f"95th percentile {self.p95_ms:.1f} ms, max {self.max_ms:.1f} ms"
        )


class EventLoopProbe(QObject):
    """Measures the GUI event loop's delay between `start()` and `stop()`."""

    def __init__(self, interval_ms: int = 50, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.delays_ms: list[float] = []

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> None:
        self.delays_ms = []
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> ProbeSummary:
        self._timer.stop()
        self._last = None
        return self.summary()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            late = (now - self._last) * 1000.0 - self.interval_ms
            self.delays_ms.append(max(0.0, late))
        self._last = now

    def summary(self) -> ProbeSummary:
        delays = sorted(self.delays_ms)
        if not delays:
            return ProbeSummary(0, 0.0, 0.0, 0.0)
        p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
        return ProbeSummary(len(delays), sum(delays) / len(delays), delays[-1], p95)
