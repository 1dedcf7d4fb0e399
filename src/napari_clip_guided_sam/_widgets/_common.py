"""Pieces shared by the plugin's widgets: notifications, guarded handlers, background jobs.

Long jobs are generators (docs/architecture.md, "Long jobs: generators of events"): they
yield `Progress` events and results, run in a napari worker, and cancel at the next yield.
Nothing a job or a handler raises reaches Qt: errors become napari notifications, and the
errors of the user's actions and jobs also stay readable in the widget's `MessagePanel`.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ._messages import MessagePanel, error_message, first_line
from ._panels import text_label


# ---------------------------------------------------------------------------- notifications
def notify_error(message: str) -> None:
    show_error(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def notify_info(message: str) -> None:
    show_info(message)


def guarded(handler: Callable) -> Callable:
    """Run a Qt handler so that any exception becomes an error notification."""

    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Exception as error:  # the viewer must never see a handler's exception
            traceback.print_exc()
            notify_error(error_message(error))
            return None

    return run


def on_click(action: Callable[[], Any]) -> Callable:
    """A slot for `QPushButton.clicked`: drops its `checked` argument (which would reach
    `action` through `guarded`'s *args) and reports errors as notifications."""
    return guarded(lambda *_: action())


def user_action(messages: MessagePanel, action: Callable[[], Any]) -> Callable:
    """A slot for a user's action (a button): the last message is cleared, and an error
    becomes a notification and stays readable in `messages`."""

    def run(*_):
        messages.clear()
        try:
            return action()
        except Exception as error:  # the viewer must never see a handler's exception
            traceback.print_exc()
            notify_error(error_message(error))
            messages.show_error(error)
            return None

    return run


# ---------------------------------------------------------------------------- jobs
@dataclass
class Progress:
    """A job's progress: `done` of `total` steps (total 0: unknown)."""

    message: str
    done: int = 0
    total: int = 0


@dataclass
class Notice:
    """A warning for the user from inside a job (shown as a napari warning)."""

    message: str


@dataclass
class JobFailed:
    """A job stopped on an exception (yielded, because workers drop RuntimeErrors)."""

    error: BaseException


def failsafe(job: Callable[..., Generator], *args, **kwargs) -> Generator:
    """Run `job`, turning an exception into a final `JobFailed` event."""
    try:
        yield from job(*args, **kwargs)
    except Exception as error:
        traceback.print_exc()
        yield JobFailed(error)


class JobPanel(QWidget):
    """A progress bar, a status line and a cancel button for one background job at a time;
    a failed job's error stays in `messages` until the next action."""

    def __init__(self, messages: MessagePanel, parent: QWidget | None = None):
        super().__init__(parent)
        self.messages = messages
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setToolTip("Progress of the job running in the background")
        self.status = text_label("", "How the last job went")
        self.status.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop after the slice being processed")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QWidget()  # progress and Cancel, shown while a job runs
        row = QHBoxLayout(self.bar)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        self.bar.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self.worker: GeneratorWorker | None = None
        self.failed = False
        self.cancelled = False

    @property
    def running(self) -> bool:
        return self.worker is not None

    def show_status(self, text: str) -> None:
        """The status line (hidden while empty)."""
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def start(
        self,
        job: Callable[..., Generator],
        *args: Any,
        on_event: Callable[[Any], None],
        on_done: Callable[[bool], None] | None = None,
    ) -> bool:
        """Run `job(*args)` in a worker; `on_event` gets every non-progress event (GUI
        thread), `on_done(ok)` runs at the end. False if a job is already running."""
        if self.running:
            notify_info("Still busy with the previous run; wait for it or press Cancel.")
            return False
        self.failed = self.cancelled = False
        self.messages.clear()
        worker = create_worker(failsafe, job, *args, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(functools.partial(self._on_yielded, on_event))
        worker.finished.connect(functools.partial(self._on_finished, on_done))
        self.worker = worker
        self.bar.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first progress event
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop at the job's next yield (the current slice finishes first)."""
        if self.worker is not None:
            self.cancelled = True
            self.show_status("Cancelling after the current step…")
            self.worker.quit()

    def _on_yielded(self, on_event: Callable[[Any], None], event: Any) -> None:
        if isinstance(event, Progress):
            self.show_status(event.message)
            self.progress.setRange(0, max(event.total, 0))
            self.progress.setValue(event.done)
        elif isinstance(event, Notice):
            notify_warning(event.message)
        elif isinstance(event, JobFailed):
            self.failed = True
            message = error_message(event.error)
            self.show_status(f"Failed: {first_line(message)}")
            notify_error(message)
            self.messages.show_error(event.error)
        else:
            guarded(on_event)(event)

    def _on_finished(self, on_done: Callable[[bool], None] | None) -> None:
        self.worker = None
        self.bar.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0 if (self.failed or self.cancelled) else 1)
        if self.cancelled:
            self.show_status("Cancelled.")
        elif not self.failed:
            self.show_status("Done.")
        if on_done is not None:
            guarded(on_done)(not (self.failed or self.cancelled))
