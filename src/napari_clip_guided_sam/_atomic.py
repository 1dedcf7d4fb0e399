"""Atomic file writes: a complete file appears at the target path, or nothing does.

Every temporary file the project makes (atomic writes, label spools, zarr stores written
as folders) is named by one rule, :func:`temporary_file`:
``.<name>.<kind>.<host>-<pid>.<random>.cgsam-tmp`` next to its target. A process killed
mid-write leaves such a file or folder behind; :func:`remove_stale_temporaries` removes the
ones whose process is gone (same host, process not running), and never touches anything
else.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil

__all__ = [
    "TEMP_SUFFIX",
    "atomic_folder",
    "atomic_write",
    "ensure_folder",
    "is_temporary",
    "os_error",
    "remove_stale_temporaries",
    "temporary_file",
]

TEMP_SUFFIX = ".cgsam-tmp"
TEMP_KINDS = ("tmp", "spool", "old")
_NAME_PART = 80  # characters of the target's name kept in a temporary's name (limit 255)
_TEMP_NAME = re.compile(
    r"^\.(?P<name>.*)\.(?P<kind>" + "|".join(TEMP_KINDS) + r")\.(?P<host>[0-9a-f]{6})-"
    r"(?P<pid>\d+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$",
    re.DOTALL,
)


def _host_tag() -> str:
    """Six hex digits naming this machine (temporaries of other hosts are never removed)."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def os_error(number: int | None, message: str) -> OSError:
    """An OSError of the subclass `number` stands for (NotADirectoryError for ENOTDIR...),
    with `errno` set and `message` as its whole text (no "[Errno N]" prefix)."""
    kind = type(OSError(number, message)) if number is not None else OSError
    error = kind(message)
    error.errno = number
    return error


def ensure_folder(folder: str | Path) -> Path:
    """Create `folder` (and its parents) if needed.

    Raises:
        NotADirectoryError: `folder` or one of its parents is a file, naming which one.
        OSError: it cannot be created (read-only, no permission, disk full), naming it.
    """
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise os_error(
                    errno.ENOTDIR,
                    f"cannot use the folder {folder}: {part} is a file, not a folder; "
                    "choose another folder or move that file",
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise os_error(
            error.errno, f"cannot create the folder {folder}: {reason}; choose a writable folder"
        ) from error
    return folder


def temporary_file(folder: str | Path, name: str, kind: str = "tmp") -> tuple[int, Path]:
    """Create an empty temporary file for target `name` in `folder`: (open handle, path).

    The name follows the project's one rule (see the module docstring), so
    :func:`remove_stale_temporaries` can recognise it after a crash.
    """
    if kind not in TEMP_KINDS:
        raise ValueError(f"temporary kind must be one of {TEMP_KINDS}, got {kind!r}")
    prefix = f".{name[:_NAME_PART]}.{kind}.{_host_tag()}-{os.getpid()}."
    handle, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX)
    return handle, Path(path)


def temporary_folder(folder: str | Path, name: str, kind: str = "tmp") -> Path:
    """Create an empty temporary folder for target `name` in `folder`, named by the same
    rule as :func:`temporary_file`."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"temporary kind must be one of {TEMP_KINDS}, got {kind!r}")
    prefix = f".{name[:_NAME_PART]}.{kind}.{_host_tag()}-{os.getpid()}."
    return Path(tempfile.mkdtemp(dir=folder, prefix=prefix, suffix=TEMP_SUFFIX))


def is_temporary(name: str) -> bool:
    """Whether a file name follows the project's temporary naming rule."""
    return _TEMP_NAME.match(name) is not None


def _process_gone(pid: int) -> bool:
    return pid != os.getpid() and not psutil.pid_exists(pid)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove this project's temporaries in `folder` left by processes that are gone.

    Only regular files and folders named by :func:`temporary_file` / :func:`temporary_folder`,
    made on this host by a process that no longer runs, are removed; a live run's
    temporaries and every other file stay.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != host or entry.is_symlink():
            continue
        if not _process_gone(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
            removed.append(Path(entry.path))
    return removed


def atomic_write(
    path: str | Path, write: Callable[[Path], object], *, overwrite: bool = True
) -> Path:
    """Call `write(temp_path)` on a temporary file next to `path`, then move it into place.

    The file is flushed to disk before it replaces anything; on any failure (disk full,
    read-only folder, Ctrl-C) the temporary file is removed and `path` is left as it was.
    OSErrors are re-raised with the target path in the message.
    """
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        raise os_error(errno.EISDIR, f"cannot write {path}: it is a folder; choose a file name")
    try:
        handle, temp = temporary_file(path.parent, path.name)
    except OSError as error:
        raise os_error(error.errno, f"cannot write {path}: {error.strerror or error}") from error
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
            reason = error.strerror or str(error)
            raise os_error(error.errno, f"cannot write {path}: {reason}") from error
        raise
    return path


def atomic_folder(
    path: str | Path, write: Callable[[Path], object], *, overwrite: bool = False
) -> Path:
    """Call `write(temp_folder)` on an empty temporary folder next to `path`, then rename it
    to `path` (a zarr store is a folder).

    With `overwrite`, an existing `path` is first renamed aside and removed after the new
    folder is in place; without it, an existing `path` is a FileExistsError and stays as it
    was. On any failure the temporary folder is removed.
    """
    path = Path(path)
    ensure_folder(path.parent)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it")
    try:
        temp = temporary_folder(path.parent, path.name)
    except OSError as error:
        raise os_error(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    old: Path | None = None
    try:
        os.chmod(temp, 0o755)  # mkdtemp's 0o700 would hide the store from other users
        write(temp)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} exists; not overwriting it")
            old = temporary_folder(path.parent, path.name, "old")
            os.replace(path, old / path.name)
        os.rename(temp, path)
    except BaseException as error:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old / path.name, path)  # the new one failed: the old one comes back
        if isinstance(error, OSError) and not isinstance(error, FileExistsError):
            reason = error.strerror or str(error)
            raise os_error(error.errno, f"cannot write {path}: {reason}") from error
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path
