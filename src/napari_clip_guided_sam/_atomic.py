"""Atomic file writes: a complete file appears at the target path, or nothing does."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | Path, write: Callable[[Path], object], *, overwrite: bool = True
) -> Path:
    """Call `write(temp_path)` on a temporary file next to `path`, then move it into place.

    The file is flushed to disk before it replaces anything; on any failure (disk full,
    read-only folder, Ctrl-C) the temporary file is removed and `path` is left as it was.
    OSErrors are re-raised with the target path in the message.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    temp = Path(temp_name)
    try:
        os.close(handle)
        write(temp)
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; not overwriting it")
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            raise OSError(error.errno, f"cannot write {path}: {error}") from error
        raise
    return path
