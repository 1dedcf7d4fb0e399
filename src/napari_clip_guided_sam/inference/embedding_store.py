"""Embeddings computed once: an on-disk cache of CLIP tokens and adapted image embeddings.

The predictor's memory caches (docs/architecture.md, "Caches") forget an image after a few
others; this store keeps what the expensive stages computed on disk, so revisiting a slice
or a class in a later session, or segmenting a stack that was precomputed
(`clip-guided-sam precompute`, the segment widget's "Precompute for this stack"), runs only
the prompt encoder and mask decoder.

Entries and keys:

- ``<folder>/<model>/<entry>.zarr.zip``: one zarr group per entry in a zip file, written to
  a temporary file and renamed into place (`_atomic.atomic_write`), so readers (other
  processes included) see a complete entry or none; two processes writing the same entry
  write the same numbers and the last rename wins.
- ``<model>`` is :func:`model_identity`: a hash of every weight of the model (a changed
  checkpoint, base weights file or seed is another model), of its configuration but the
  prompt options that never reach the encoder, and of the device kind and precision.
- ``<entry>``: the image's content hash (``predictor.image_key``) with ``tokens`` for its
  CLIP tokens, or with the class name (and, with feature surgery, the class list) for an
  embedding and its similarity map.

A size limit keeps the store bounded: after a write, the least recently used entries (by
file time; a hit touches its file) are removed until the store is under the limit, under a
file lock so two processes do not evict at once. An entry that cannot be read (truncated,
corrupt, another format) is removed and recomputed, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from .._atomic import atomic_write, ensure_folder, is_temporary, remove_stale_temporaries

__all__ = [
    "DEFAULT_MAX_GB",
    "EmbeddingStore",
    "ModelEmbeddings",
    "default_store_folder",
    "model_identity",
]

DEFAULT_MAX_GB = 8.0
FORMAT = 1  # bumped when the entry layout changes: older entries then never match
_SUFFIX = ".zarr.zip"
_LOCK = ".lock"
# Options that shape prompts only (`Predictor.set_guide_options`): not part of the key.
_PROMPT_ONLY = ("threshold", "n_points", "n_negative_points")


def default_store_folder() -> Path:
    """``embeddings`` in the plugin's cache folder (``$CLIP_GUIDED_SAM_CACHE`` or the user
    cache folder, as the base weights)."""
    from ..model.weights import cache_dir

    return cache_dir() / "embeddings"


def model_identity(model: torch.nn.Module, dtype: torch.dtype | None, device: torch.device) -> str:
    """A hash of what a model's embeddings depend on: every weight, the configuration
    (without the prompt-only guide options), the precision and the device kind."""
    digest = hashlib.blake2b(digest_size=16)
    config = asdict(model.config)  # type: ignore[call-overload]
    for name in _PROMPT_ONLY:
        config.get("guide", {}).pop(name, None)
    header = {"format": FORMAT, "config": config, "dtype": str(dtype), "device": device.type}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().contiguous().cpu()
        digest.update(str(data.dtype).encode() + repr(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _entry_name(*parts: Any) -> str:
    text = json.dumps([FORMAT, *parts])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest() + _SUFFIX


class EmbeddingStore:
    """A folder of cached embeddings with a size limit (see the module docstring).

    Args:
        folder: where entries live (default :func:`default_store_folder`).
        max_gb: size limit; the least recently used entries go when it is passed.
    """

    def __init__(self, folder: str | Path | None = None, max_gb: float = DEFAULT_MAX_GB):
        if not max_gb > 0:
            raise ValueError(f"the embedding cache size limit must be positive, got {max_gb}")
        self.folder = Path(folder) if folder is not None else default_store_folder()
        self.max_bytes = int(max_gb * 2**30)
        self.discarded = 0  # unreadable entries this instance removed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EmbeddingStore):
            return NotImplemented
        return (self.folder, self.max_bytes) == (other.folder, other.max_bytes)

    def __hash__(self) -> int:
        return hash((self.folder, self.max_bytes))

    def for_model(
        self, model: torch.nn.Module, dtype: torch.dtype | None, device: torch.device
    ) -> ModelEmbeddings:
        """The entries of one model at one precision and device kind."""
        return ModelEmbeddings(self, model_identity(model, dtype, device)[:32])

    # ------------------------------------------------------------------ entries
    def read(self, scope: str, name: str) -> dict[str, Any] | None:
        """The arrays of an entry, None when absent; an unreadable entry is removed."""
        import zarr
        from zarr.storage import ZipStore

        path = self.folder / scope / name
        if not path.is_file():
            return None
        try:
            store = ZipStore(path, mode="r")
            try:
                group = zarr.open_group(store, mode="r")
                attributes: dict[str, Any] = group.attrs.asdict()
                if attributes.get("format") != FORMAT:
                    raise ValueError(f"entry format {attributes.get('format')!r}")
                arrays = {key: np.asarray(array[...]) for key, array in group.arrays()}
                kinds: dict[str, str] = dict(attributes.get("torch_dtypes", {}))
            finally:
                store.close()
        except FileNotFoundError:  # evicted or cleared by another process meanwhile
            return None
        except Exception:  # truncated, corrupt or foreign: recompute it
            self.discarded += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return {key: _restore(array, kinds.get(key)) for key, array in arrays.items()}

    def write(self, scope: str, name: str, arrays: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Store an entry atomically, then keep the store under its size limit. A store
        that cannot be written (full disk, a file in the way) is a warning: the result the
        entry came from is still good."""
        import zarr
        from zarr.storage import ZipStore

        plain = {key: _plain(value) for key, value in arrays.items()}
        attributes: dict[str, Any] = {
            "format": FORMAT,
            "torch_dtypes": {key: kind for key, (_, kind) in plain.items() if kind},
        }

        def write_zip(temp: Path) -> None:
            store = ZipStore(temp, mode="w")
            try:
                group = zarr.open_group(store, mode="w", attributes=attributes)
                for key, (array, _) in plain.items():
                    group.create_array(key, data=array, chunks=array.shape)
            finally:
                store.close()

        try:
            atomic_write(ensure_folder(self.folder / scope) / name, write_zip)
            self.evict()
        except OSError as error:
            warnings.warn(
                f"cannot keep embeddings in the cache {self.folder}: {error}; continuing "
                "without it (choose another cache folder, or free some space)",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ size
    def entries(self) -> list[os.DirEntry]:
        """Every complete entry file (temporaries excluded)."""
        found: list[os.DirEntry] = []
        if not self.folder.is_dir():
            return found
        for scope in os.scandir(self.folder):
            if not scope.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                found += [
                    entry
                    for entry in os.scandir(scope.path)
                    if entry.name.endswith(_SUFFIX) and not is_temporary(entry.name)
                ]
        return found

    def size_bytes(self) -> int:
        total = 0
        for entry in self.entries():
            with contextlib.suppress(OSError):
                total += entry.stat().st_size
        return total

    def evict(self) -> int:
        """Remove the least recently used entries until the store fits its limit (and the
        temporaries of killed writers); returns how many entries were removed."""
        with self._lock():
            for scope in os.scandir(self.folder):
                if scope.is_dir(follow_symlinks=False):
                    remove_stale_temporaries(scope.path)
            stats = []
            for entry in self.entries():
                with contextlib.suppress(OSError):
                    info = entry.stat()
                    stats.append((info.st_mtime_ns, info.st_size, entry.path))
            total = sum(size for _, size, _ in stats)
            removed = 0
            for _, size, path in sorted(stats):
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed += 1
                total -= size
        return removed

    def clear(self) -> int:
        """Remove every entry (of every model); returns how many were removed."""
        with self._lock():
            count = len(self.entries())
            for scope in os.scandir(self.folder) if self.folder.is_dir() else []:
                if scope.is_dir(follow_symlinks=False):
                    shutil.rmtree(scope.path, ignore_errors=True)
        return count

    def _lock(self) -> FileLock:
        ensure_folder(self.folder)
        return FileLock(str(self.folder / _LOCK))


class ModelEmbeddings:
    """One model's entries in a store: what the predictor reads and writes."""

    def __init__(self, store: EmbeddingStore, scope: str):
        self.store = store
        self.scope = scope

    def tokens(self, image_key: str, device: torch.device) -> torch.Tensor | None:
        found = self.store.read(self.scope, _entry_name(image_key, "tokens"))
        if found is None or "tokens" not in found:
            return None
        return found["tokens"].to(device)

    def put_tokens(self, image_key: str, tokens: torch.Tensor) -> None:
        self.store.write(self.scope, _entry_name(image_key, "tokens"), {"tokens": tokens})

    def embedding(
        self, key: tuple, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(embedding, similarity map) of a predictor embedding key, or None."""
        found = self.store.read(self.scope, _entry_name("embedding", *key))
        if found is None or not {"embedding", "similarity_map"} <= set(found):
            return None
        return found["embedding"].to(device), found["similarity_map"].to(device)

    def put_embedding(self, key: tuple, embedding: torch.Tensor, similarity: torch.Tensor) -> None:
        self.store.write(
            self.scope,
            _entry_name("embedding", *key),
            {"embedding": embedding, "similarity_map": similarity},
        )


def _plain(value: np.ndarray | torch.Tensor) -> tuple[np.ndarray, str | None]:
    """A numpy array to store and the torch dtype to restore (bfloat16 has no numpy twin)."""
    if isinstance(value, np.ndarray):
        return value, None
    tensor = value.detach().contiguous().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy(), "bfloat16"
    return tensor.numpy(), str(tensor.dtype).removeprefix("torch.")


def _restore(array: np.ndarray, kind: str | None) -> Any:
    if kind is None:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.view(torch.bfloat16) if kind == "bfloat16" else tensor
