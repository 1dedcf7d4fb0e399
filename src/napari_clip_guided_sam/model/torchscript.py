"""Tensors out of a TorchScript archive without running any of its code.

OpenAI's official CLIP files are TorchScript archives. `torch.jit.load` compiles the
archive's code and runs it (a class's `__setstate__` runs while loading, and can write any
file), so the project never calls it. This reader unpickles only the archive's `data.pkl`,
with an unpickler that knows nothing but tensor-rebuild functions, storage types and
`OrderedDict`; every TorchScript class (`__torch__.*`) becomes an inert record of the
attributes it was saved with, and tensor bytes come straight from the archive's `data/`
entries. Nothing under `code/` is read, let alone run.
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

# Storage classes of the legacy typed-storage pickles -> element type.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class TorchScriptError(ValueError):
    """The file is not a TorchScript archive of plain tensors this reader can take apart."""


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether `path` is a zip with TorchScript's `code/` folder or `constants.pkl`."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) > 1 and (parts[1] == "code" or parts[1] == "constants.pkl"):
                return True
    return False


class ScriptObject:
    """Stands in for a TorchScript class instance: records its saved state, runs nothing."""

    class_name = "__torch__"

    def __setstate__(self, state: Any) -> None:
        self.saved_state = state


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size, stride, *_ignored: Any
) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2` without autograd hooks: a strided view of the
    storage (an out-of-bounds view is refused by `as_strided`)."""
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, *_ignored: Any) -> torch.Tensor:
    return data


def _identity(value: Any, *_ignored: Any) -> Any:
    return value


# (module, name) -> the harmless object the unpickler gets instead. Everything else is refused.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_floatlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    **{("torch", name): dtype for name, dtype in _STORAGE_DTYPES.items()},
}


class _DataUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl`, taking storages from the archive's `data/` entries."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str):
        super().__init__(archive.open(f"{prefix}/data.pkl"))
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}
        self._record_types: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._record_types:
                self._record_types[qualified] = type(
                    "ScriptObject", (ScriptObject,), {"class_name": qualified}
                )
            return self._record_types[qualified]
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not allowed in a weights archive"
            ) from None

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"malformed storage record {pid!r}")
        key = str(key)
        if key not in self._storages:
            name = f"{self._prefix}/data/{key}"
            try:
                info = self._archive.getinfo(name)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
            expected = numel * dtype.itemsize
            if info.file_size != expected:
                raise pickle.UnpicklingError(
                    f"storage {key} holds {info.file_size} bytes, expected {expected}"
                )
            raw = bytearray(self._archive.read(name))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = flat
        return self._storages[key]


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    roots = [
        name.removesuffix("/data.pkl")
        for name in archive.namelist()
        if name.endswith("/data.pkl") and name.count("/") == 1
    ]
    if len(roots) != 1:
        raise TorchScriptError("no single data.pkl at the top of the archive")
    return roots[0]


def _collect(record: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    """Tensors of a module record and its submodules, keyed like `state_dict()`."""
    state = getattr(record, "saved_state", None)
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[prefix + name] = value
        elif isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", tensors)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript module archive, keyed like its state dict
    (parameters, buffers and any other tensor attribute), without running its code.

    Raises TorchScriptError when the archive holds anything but tensors, TorchScript
    objects and plain containers, or is damaged.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            byteorder = f"{prefix}/byteorder"
            if byteorder in archive.namelist():
                order = archive.read(byteorder).decode("ascii", "replace").strip()
                if order != sys.byteorder:
                    raise TorchScriptError(f"tensors stored {order}-endian; this machine is not")
            root = _DataUnpickler(archive, prefix).load()
    except TorchScriptError as error:
        raise TorchScriptError(f"{path.name}: {error}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError,
            TypeError, KeyError, IndexError, AttributeError) as error:  # fmt: skip
        raise TorchScriptError(f"{path.name} is not a plain-tensor archive: {error}") from error
    if not isinstance(root, ScriptObject):
        raise TorchScriptError(f"{path.name} does not hold a TorchScript module")
    tensors: dict[str, torch.Tensor] = {}
    _collect(root, "", tensors)
    return tensors
