"""One run at a time per output folder: an advisory lock that names its holder.

A batch segmentation or a training run holds ``.clip-guided-sam.lock`` in its output folder
while it writes there (``filelock``: an OS file lock, released by the system when the
process ends, so a killed run never blocks the next one). The holder writes its process id,
host, job and start time into the lock file, so a second run is refused with a message that
names the first.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from ._atomic import ensure_folder, os_error

__all__ = ["LOCK_NAME", "FolderBusyError", "output_lock"]

LOCK_NAME = ".clip-guided-sam.lock"


class FolderBusyError(RuntimeError):
    """Another run is writing to the same output folder."""


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _write_holder(path: Path, job: str) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "job": job,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # the record only improves a message
        handle = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(handle, 0)
            os.write(handle, json.dumps(holder).encode())
        finally:
            os.close(handle)


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    here = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    same = " (this program)" if holder.get("pid") == os.getpid() and not here else ""
    return (
        f"process {holder.get('pid')}{here}{same}, {holder.get('job', 'a run')}, "
        f"started {holder.get('started', 'at an unknown time')}"
    )


@contextlib.contextmanager
def output_lock(folder: str | Path, job: str) -> Iterator[Path]:
    """Hold the lock of `folder` (created if needed) for the duration of the block.

    Args:
        job: what the holder does, for the other run's message (e.g. "clip-guided-sam
            segment").

    Raises:
        FolderBusyError: another run holds the folder; the message names its process.
        OSError: the folder cannot be created or written (read-only, a file in the way).
    """
    folder = ensure_folder(folder)
    path = folder / LOCK_NAME
    before = _read_holder(path)
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = _read_holder(path) or before
        raise FolderBusyError(
            f"another run is writing to {folder}: {_describe(holder)}. Wait for it to finish, "
            "or choose another output folder (the lock is freed as soon as that process ends)."
        ) from None
    except OSError as error:
        raise os_error(
            error.errno,
            f"cannot write to the folder {folder}: {error.strerror or error}; choose a "
            "writable output folder",
        ) from error
    try:
        _write_holder(path, job)
        yield folder
    finally:
        lock.release()
