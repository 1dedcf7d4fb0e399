"""A size-limited store for frozen-prefix activations, in memory and optionally on disk.

When the first encoder blocks carry no adapter and do not train, the tokens leaving them
depend only on the input image (docs/architecture.md, "Frozen prefix"). `CLIPGuidedSAM`
looks them up here by a content hash of the input, so training computes them once per
image (and augmentation), validation once per held-out image, and the predictor once per
image whatever the number of classes. The store holds tensors only: a wrong key can cost a
recomputation, never a wrong result (`prefix_key`).

Entries stay in memory, most recently used first, up to `max_bytes`; with a `folder` and
`max_disk_bytes`, entries pushed out of memory are written there as safetensors files
(never pickles) and read back on demand, the oldest deleted beyond the disk limit; `clear`
removes the files it wrote.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

Entry = tuple[torch.Tensor, ...]


@dataclass
class PrefixStats:
    """What the store did: tests and benchmarks check what a step recomputed."""

    hits: int = 0  # entries served (from memory or disk)
    misses: int = 0  # entries that had to be computed
    disk_reads: int = 0
    disk_writes: int = 0


def tensor_digest(content: torch.Tensor | bytes) -> str:
    """A content hash of a tensor (dtype, shape and bytes) or of bytes."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(content, bytes):
        digest.update(content)
        return digest.hexdigest()
    data = content.detach().contiguous().cpu()
    digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def entry_bytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry)


class PrefixStore:
    """Entries (tuples of tensors) by string key, least recently used dropped first.

    max_bytes: memory for entries; folder / max_disk_bytes: where entries that no longer
    fit in memory go (0: nowhere, they are dropped). parts: which prefixes the model keeps
    here ("sam": SAM encoder tokens, "clip": CLIP visual streams). Entries come back on the
    device they were stored from. Thread-safe.
    """

    def __init__(
        self,
        max_bytes: int,
        folder: str | Path | None = None,
        max_disk_bytes: int = 0,
        parts: tuple[str, ...] = ("sam", "clip"),
    ):
        if max_bytes < 0 or max_disk_bytes < 0:
            raise ValueError("Prefix cache sizes must not be negative.")
        self.max_bytes = max_bytes
        self.max_disk_bytes = max_disk_bytes if folder is not None else 0
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None and self.max_disk_bytes:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.parts = frozenset(parts)
        self.stats = PrefixStats()
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._memory_bytes = 0
        # key -> (bytes, device, strides): entries come back in their memory layout, which
        # the rounding of the kernels that read them follows.
        self._disk: OrderedDict[str, tuple[int, torch.device, list]] = OrderedDict()
        self._disk_bytes = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ access
    def get(self, key: str) -> Entry | None:
        """The entry stored under `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                self.stats.hits += 1
                return entry
            if key not in self._disk:
                return None
            size, device, strides = self._disk.pop(key)
            path = self._path(key)
            tensors = load_file(str(path))
            path.unlink(missing_ok=True)
            self._disk_bytes -= size
            entry = tuple(
                _with_strides(tensors[str(i)], stride).to(device)
                for i, stride in enumerate(strides)
            )
            self.stats.disk_reads += 1
            self.stats.hits += 1
            self._keep(key, entry)
            return entry

    def put(self, key: str, entry: Entry) -> None:
        """Store `entry` (detached tensors) under `key`."""
        entry = tuple(t.detach() for t in entry)
        with self._lock:
            self.stats.misses += 1
            if key in self._memory or key in self._disk:
                return
            self._keep(key, entry)

    def __len__(self) -> int:
        return len(self._memory) + len(self._disk)

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    def clear(self) -> None:
        """Drop every entry (files on disk included)."""
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0
            for key in list(self._disk):
                self._path(key).unlink(missing_ok=True)
            self._disk.clear()
            self._disk_bytes = 0

    # ------------------------------------------------------------------ placement
    def _keep(self, key: str, entry: Entry) -> None:
        """Put `entry` in memory, moving the least recently used ones to disk (or out)."""
        size = entry_bytes(entry)
        if size > self.max_bytes:
            self._spill(key, entry, size)
            return
        self._memory[key] = entry
        self._memory_bytes += size
        while self._memory_bytes > self.max_bytes:
            old_key, old_entry = self._memory.popitem(last=False)
            old_size = entry_bytes(old_entry)
            self._memory_bytes -= old_size
            self._spill(old_key, old_entry, old_size)

    def _spill(self, key: str, entry: Entry, size: int) -> None:
        if size > self.max_disk_bytes:
            return
        while self._disk_bytes + size > self.max_disk_bytes:
            old_key, (old_size, *_) = self._disk.popitem(last=False)
            self._path(old_key).unlink(missing_ok=True)
            self._disk_bytes -= old_size
        tensors = {str(i): t.contiguous().cpu() for i, t in enumerate(entry)}
        # Not atomic on purpose: the store reads back only files it finished writing itself.
        save_file(tensors, str(self._path(key)))
        self._disk[key] = (size, entry[0].device, [t.stride() for t in entry])
        self._disk_bytes += size
        self.stats.disk_writes += 1

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.safetensors"


def _with_strides(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """A copy of a contiguous tensor laid out in memory with `stride`."""
    if tensor.stride() == tuple(stride):
        return tensor
    return torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype).copy_(tensor)
