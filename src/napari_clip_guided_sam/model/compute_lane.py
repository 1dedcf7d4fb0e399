"""One unit of model work at a time in this process, in the order they asked.

Inside napari a preview, a click's decode, a batch slice and a training step each run in
their own worker thread. Run at once they would split the same cores between them, and
each of torch's operations waits for its slowest thread (docs/performance.md, "Threads on a
busy machine"), so everything becomes slower than running them one after the other. The
lane lets one unit in at a time; waiting units enter in the order they came (a ticket
queue), so a training loop that asks again right after its step cannot starve a click.
A thread already in the lane may enter again (a validation inside a training step).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ComputeLane:
    """A fair (first come, first served), re-entrant lock for units of model work."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._owner: int | None = None
        self._depth = 0

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """Hold the lane for the body (waiting for the units that asked before)."""
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
            else:
                ticket = self._next_ticket
                self._next_ticket += 1
                self._condition.wait_for(lambda: self._serving == ticket and self._owner is None)
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._condition:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._serving += 1
                    self._condition.notify_all()

    @property
    def busy(self) -> bool:
        """Whether a unit holds the lane now."""
        return self._owner is not None

    @property
    def waiting(self) -> int:
        """Units waiting for their turn now."""
        with self._condition:
            return self._next_ticket - self._serving - (self._owner is not None)


COMPUTE_LANE = ComputeLane()  # the process's lane: every unit of model work passes here
