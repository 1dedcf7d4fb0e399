"""sha256 of weight files, remembered so that a large file is hashed once, not every start.

The record is a small JSON file in the weights folder: per file (by resolved path) its size,
modification time (ns) and sha256. A file whose size or modification time changed is hashed
again. The record only saves time: when it cannot be written, hashing still works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from .._atomic import atomic_write

RECORD_NAME = ".verified-weights.json"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(path: Path) -> dict[str, int]:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _read_record(record: Path) -> dict[str, dict]:
    try:
        entries = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def remembered_sha256(path: str | Path, record: Path, *, rehash: bool = False) -> str:
    """sha256 of `path`, taken from `record` when the file is unchanged since it was hashed.

    rehash: hash the file even when the record knows it (e.g. `weights verify`).
    """
    path = Path(path).resolve()
    key = str(path)
    entries = _read_record(record)
    signature = _signature(path)
    entry = entries.get(key)
    if not rehash and isinstance(entry, dict) and entry.get("sha256"):
        if {name: entry.get(name) for name in signature} == signature:
            return entry["sha256"]
    digest = sha256_file(path)
    remember(path, digest, record)
    return digest


def remember(path: str | Path, digest: str, record: Path) -> None:
    """Note that `path`, as it is now, has sha256 `digest` (e.g. after a checked download)."""
    path = Path(path).resolve()
    entries = _read_record(record)
    entries[str(path)] = {**_signature(path), "sha256": digest}
    text = json.dumps(entries, indent=1, sort_keys=True)
    with contextlib.suppress(OSError):  # a read-only weights folder only costs time
        atomic_write(record, lambda temp: temp.write_text(text, encoding="utf-8"))
