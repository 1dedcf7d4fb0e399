"""Label TIFF encoding: one set of metadata rules, for an array or slices streamed from disk.

A label image is written as zlib-compressed TIFF or OME-TIFF whose axes, pixel size and unit
``data.io.read_image`` reads back. :func:`write_label_tiff` takes either an array in memory
(``data.io.write_labels``) or a :class:`LabelSpool`, whose slices were appended one at a time
to a temporary file and are written page by page (batch segmentation of stacks larger than
RAM).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = [
    "MICROMETRE",
    "LabelSpool",
    "label_tiff_kwargs",
    "smallest_label_dtype",
    "write_label_tiff",
]

MICROMETRE = "µm"
_CM_PER_UNIT = {"nm": 1e-7, MICROMETRE: 1e-4, "mm": 0.1, "cm": 1.0, "m": 100.0}
_IMAGEJ_ORDER = "TZCYX"


def smallest_label_dtype(top: int) -> type:
    """The smallest unsigned integer dtype that holds labels up to ``top``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def label_tiff_kwargs(
    dtype: np.dtype, axes: str, sizes: dict[str, float], unit: str | None, ome: bool
) -> dict[str, Any]:
    """``tifffile.imwrite`` arguments that keep axes, pixel size and unit readable by
    ``data.io.read_image``: OME-XML, ImageJ (8/16-bit, TZCYX order) or tifffile's shaped
    JSON metadata (plus resolution tags in pixels per centimetre, for other readers).

    Args:
        dtype: dtype the labels are stored with.
        axes: axes letters of the labels, e.g. ``"ZYX"``.
        sizes: physical pixel size per spatial axis present, e.g. ``{"X": 0.5, "Y": 0.5}``.
        unit: unit of ``sizes`` (``"µm"`` for micrometres), None if unknown.
        ome: write OME-TIFF.
    """
    kwargs: dict[str, Any] = {"photometric": "minisblack", "compression": "zlib"}
    if ome:
        meta: dict[str, Any] = {"axes": axes}
        for axis, size in sizes.items():
            meta[f"PhysicalSize{axis}"] = size
            meta[f"PhysicalSize{axis}Unit"] = unit or MICROMETRE
        return {**kwargs, "ome": True, "metadata": meta}
    resolution = (1.0 / sizes["X"], 1.0 / sizes["Y"]) if "X" in sizes and "Y" in sizes else None
    if dtype in (np.uint8, np.uint16) and _imagej_axes_ok(axes):
        meta = {"axes": axes}
        if "Z" in sizes:
            meta["spacing"] = sizes["Z"]
        if unit:
            meta["unit"] = "micron" if unit == MICROMETRE else unit
        if resolution:
            kwargs["resolution"] = resolution
        return {**kwargs, "imagej": True, "metadata": meta}
    meta = {"axes": axes}
    spatial = "".join(a for a in axes if a in sizes)
    if sizes and spatial == "".join(a for a in axes if a in "ZYX"):
        meta.update(pixel_size=[sizes[a] for a in spatial], unit=unit)
    if resolution and unit in _CM_PER_UNIT:
        cm = _CM_PER_UNIT[unit]
        kwargs.update(
            resolution=(resolution[0] / cm, resolution[1] / cm), resolutionunit="CENTIMETER"
        )
    return {**kwargs, "metadata": meta}


def _imagej_axes_ok(axes: str) -> bool:
    return set(axes) <= set(_IMAGEJ_ORDER) and list(axes) == sorted(axes, key=_IMAGEJ_ORDER.index)


class LabelSpool:
    """Label slices ``[Y, X]`` of a label image ``shape`` appended to a raw temporary file.

    Lives next to the output (same disk, so a full disk shows up while the slices are
    produced) and is removed on exit, whatever happened. Pass it to
    :func:`write_label_tiff` once every slice is appended.
    """

    def __init__(self, folder: Path, name: str, shape: tuple[int, ...], dtype: type):
        folder.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(shape)
        self.slice_shape = self.shape[-2:]
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.max_label = 0
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".spool")
        self.path = Path(temp)
        self._file = os.fdopen(handle, "w+b")

    def __enter__(self) -> LabelSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def append(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        if labels.shape != self.slice_shape:
            raise ValueError(f"label slice {labels.shape} != expected {self.slice_shape}")
        top = int(labels.max(initial=0))
        if top > np.iinfo(self.dtype).max:
            raise ValueError(f"label value {top} does not fit {self.dtype}")
        self.max_label = max(self.max_label, top)
        self._file.write(np.ascontiguousarray(labels, dtype=self.dtype).tobytes())
        self.count += 1

    def slices(self, dtype: type) -> Iterator[np.ndarray]:
        """The spooled slices in order, as ``dtype``."""
        self._file.flush()
        per_slice = int(np.prod(self.slice_shape))
        for index in range(self.count):
            self._file.seek(index * per_slice * self.dtype.itemsize)
            data = np.fromfile(self._file, dtype=self.dtype, count=per_slice)
            yield data.reshape(self.slice_shape).astype(dtype, copy=False)


def write_label_tiff(
    path: Path,
    labels: np.ndarray | LabelSpool,
    axes: str,
    sizes: dict[str, float],
    unit: str | None,
    ome: bool,
) -> None:
    """Write labels as one zlib-compressed TIFF (OME-TIFF if ``ome``) at ``path``.

    Args:
        labels: an unsigned integer array ``[..., Y, X]``, written as it is; or a
            :class:`LabelSpool`, written page by page with the smallest dtype that holds
            its largest label.
        axes, sizes, unit, ome: see :func:`label_tiff_kwargs`.
    """
    if isinstance(labels, np.ndarray):
        kwargs = label_tiff_kwargs(labels.dtype, axes, sizes, unit, ome)
        tifffile.imwrite(path, labels, **kwargs)
        return
    dtype = np.dtype(smallest_label_dtype(labels.max_label))
    kwargs = label_tiff_kwargs(dtype, axes, sizes, unit, ome)
    pages = labels.slices(dtype)
    if len(labels.shape) == 2:
        tifffile.imwrite(path, next(pages), **kwargs)
    else:
        tifffile.imwrite(path, pages, shape=labels.shape, dtype=dtype, **kwargs)
