"""Writing labels: zlib-compressed TIFF or OME-TIFF with one set of metadata rules.

:func:`write_labels` writes a label array atomically with the axes, pixel size and unit of
the image it belongs to, so ``data.reader.read_image`` reads them back. The encoding,
:func:`write_label_tiff`, takes either an array in memory or a :class:`LabelSpool`, whose
slices were appended one at a time to a temporary file and are written page by page (batch
segmentation of stacks larger than RAM).
"""

from __future__ import annotations

import contextlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._atomic import atomic_write, ensure_folder, temporary_file
from .axes import CHANNEL_AXES, SPATIAL_AXES, default_axes
from .formats import PROVENANCE_KEY, is_ome_tiff, is_tiff, is_zarr
from .image import ImageData
from .ome_zarr import geometry_of, label_zarr_provenance, write_label_zarr
from .units import IMAGEJ_MICROMETRE, MICROMETRE, length_unit

__all__ = [
    "LabelSpool",
    "label_provenance",
    "label_tiff_kwargs",
    "smallest_label_dtype",
    "write_label_tiff",
    "write_labels",
]

_IMAGEJ_ORDER = "TZCYX"


def smallest_label_dtype(top: int) -> type[np.unsignedinteger]:
    """The smallest unsigned integer dtype that holds labels up to ``top``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def label_tiff_kwargs(
    dtype: np.dtype,
    axes: str,
    sizes: dict[str, float],
    unit: str | None,
    ome: bool,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``tifffile.imwrite`` arguments that keep axes, pixel size and unit readable by
    ``data.reader.read_image``: OME-XML, ImageJ (8/16-bit, TZCYX order) or tifffile's shaped
    JSON metadata (plus resolution tags in pixels per centimetre, for other readers).

    Args:
        dtype: dtype the labels are stored with.
        axes: axes letters of the labels, e.g. ``"ZYX"``.
        sizes: physical pixel size per spatial axis present, e.g. ``{"X": 0.5, "Y": 0.5}``.
        unit: unit of ``sizes`` (``"µm"`` for micrometres), None if unknown.
        ome: write OME-TIFF.
        provenance: what made the labels (the model's preset, adapter state, checkpoint,
            classes, base weights), stored as JSON where each format keeps free text: the
            OME image Description, the ImageJ Info, or a ``clip_guided_sam`` entry of tifffile's
            metadata; :func:`label_provenance` reads it back.
    """
    kwargs: dict[str, Any] = {"photometric": "minisblack", "compression": "zlib"}
    record = {PROVENANCE_KEY: dict(provenance)} if provenance else None
    if ome:
        meta: dict[str, Any] = {"axes": axes}
        for axis, size in sizes.items():
            meta[f"PhysicalSize{axis}"] = size
            meta[f"PhysicalSize{axis}Unit"] = unit or MICROMETRE
        if record:
            meta["Description"] = json.dumps(record)
        return {**kwargs, "ome": True, "metadata": meta}
    resolution = (1.0 / sizes["X"], 1.0 / sizes["Y"]) if "X" in sizes and "Y" in sizes else None
    if dtype in (np.uint8, np.uint16) and _imagej_axes_ok(axes):
        meta = {"axes": axes}
        if "Z" in sizes:
            meta["spacing"] = sizes["Z"]
        if unit:
            meta["unit"] = IMAGEJ_MICROMETRE if unit == MICROMETRE else unit
        if resolution:
            kwargs["resolution"] = resolution
        if record:
            meta["Info"] = json.dumps(record)
        return {**kwargs, "imagej": True, "metadata": meta}
    meta = {"axes": axes}
    if record:
        meta.update(record)
    spatial = "".join(a for a in axes if a in sizes)
    if sizes and spatial == "".join(a for a in axes if a in SPATIAL_AXES):
        meta.update(pixel_size=[sizes[a] for a in spatial], unit=unit)
    known = length_unit(unit)
    if resolution and known is not None:
        cm = known.centimetres
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

    def __init__(
        self, folder: Path, name: str, shape: tuple[int, ...], dtype: type[np.unsignedinteger]
    ):
        ensure_folder(folder)
        self.shape = tuple(shape)
        self.slice_shape = self.shape[-2:]
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.max_label = 0
        handle, self.path = temporary_file(folder, name, "spool")
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

    def slices(self, dtype: np.dtype) -> Iterator[np.ndarray]:
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
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write labels as one zlib-compressed TIFF (OME-TIFF if ``ome``) at ``path``.

    Args:
        labels: an unsigned integer array ``[..., Y, X]``, written as it is; or a
            :class:`LabelSpool`, written page by page with the smallest dtype that holds
            its largest label.
        axes, sizes, unit, ome, provenance: see :func:`label_tiff_kwargs`.
    """
    if isinstance(labels, np.ndarray):
        kwargs = label_tiff_kwargs(labels.dtype, axes, sizes, unit, ome, provenance)
        tifffile.imwrite(path, labels, **kwargs)
        return
    dtype = np.dtype(smallest_label_dtype(labels.max_label))
    kwargs = label_tiff_kwargs(dtype, axes, sizes, unit, ome, provenance)
    pages = labels.slices(dtype)
    if len(labels.shape) == 2:
        tifffile.imwrite(path, next(pages), **kwargs)
    else:
        tifffile.imwrite(path, pages, shape=labels.shape, dtype=dtype, **kwargs)


def label_provenance(path: str | Path) -> dict[str, Any] | None:
    """What made a label file (see :func:`label_tiff_kwargs`) or OME-Zarr label image
    (``data.ome_zarr.write_label_zarr``), or None if it does not say."""
    if Path(path).is_dir():
        return label_zarr_provenance(path)
    with tifffile.TiffFile(path) as tif:
        texts: list[str] = []
        if tif.is_ome:
            description = ET.fromstring(tif.ome_metadata or "<x/>").find(
                ".//{*}Image/{*}Description"
            )
            if description is not None and description.text:
                texts.append(description.text)
        if tif.imagej_metadata and isinstance(tif.imagej_metadata.get("Info"), str):
            texts.append(tif.imagej_metadata["Info"])
        shaped = tif.shaped_metadata
        if shaped and PROVENANCE_KEY in shaped[0]:
            return dict(shaped[0][PROVENANCE_KEY])
    for text in texts:
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict) and isinstance(record.get(PROVENANCE_KEY), dict):
                return record[PROVENANCE_KEY]
    return None


def write_labels(
    path: str | Path,
    labels: Any,
    like: ImageData | None = None,
    *,
    overwrite: bool = False,
    axes: str | None = None,
) -> Path:
    """Write a label image or stack as zlib-compressed TIFF (OME-TIFF for ``.ome.tif(f)``), or
    as an OME-Zarr label store for ``.zarr``/``.ome.zarr`` (``data.ome_zarr``).

    Args:
        path: destination; ``.tif``/``.tiff``, ``.ome.tif``/``.ome.tiff`` or ``.ome.zarr``.
        labels: integer or bool array, ``[Y, X]``, ``[Z, Y, X]``, ... (non-negative values).
            Stored with the smallest unsigned dtype that holds its maximum.
        like: the source image; its axes (channel axis dropped), pixel size and unit are
            written with the labels, whose shape must equal the image's without channels.
        overwrite: replace an existing file; otherwise refuse with FileExistsError.
        axes: axes of ``labels`` when ``like`` is None (default ``YX``/``ZYX``/``TZYX``).

    The file is written to a temporary file in the same folder and moved into place, so a
    failure never leaves a partial file.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: bad suffix, non-integer or negative labels, shape/axes mismatch.
        OSError: writing failed (read-only folder, disk full); the message names the path.
    """
    path = Path(path)
    if not is_tiff(path) and not is_zarr(path):
        raise ValueError(
            f"labels are written as TIFF or OME-Zarr: {path} must end in .tif, .ome.tif or "
            ".ome.zarr"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or choose another name"
        )
    data = _labels_to_unsigned(labels)
    label_axes = _label_axes(data, like, axes)
    pixel_size, unit = _label_calibration(like, label_axes)
    if is_zarr(path):
        like_zarr = geometry_of(like) if like is not None else None
        return write_label_zarr(
            path, data, label_axes, pixel_size, unit, like=like_zarr, overwrite=overwrite
        )
    ome = is_ome_tiff(path)
    atomic_write(
        path,
        lambda temp: write_label_tiff(
            temp, data, axes=label_axes, sizes=pixel_size, unit=unit, ome=ome
        ),
        overwrite=overwrite,
    )
    return path


def _labels_to_unsigned(labels: Any) -> np.ndarray:
    data = np.asarray(labels)
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"labels must be an integer or bool array, got dtype {data.dtype}")
    if data.size and data.min() < 0:
        raise ValueError(f"labels must be non-negative, got minimum {data.min()}")
    top = int(data.max()) if data.size else 0
    return data.astype(smallest_label_dtype(top), copy=False)


def _label_axes(data: np.ndarray, like: ImageData | None, axes: str | None) -> str:
    if like is not None:
        keep = [i for i, a in enumerate(like.axes) if a not in CHANNEL_AXES]
        expected = tuple(like.shape[i] for i in keep)
        if data.shape != expected:
            raise ValueError(
                f"labels shape {data.shape} does not match the image {like.name} shape "
                f"{like.shape} (axes {like.axes!r}) without channels: expected {expected}"
            )
        return "".join(like.axes[i] for i in keep)
    axes = (axes or default_axes(data.ndim) or "").upper()
    if len(axes) != data.ndim:
        raise ValueError(
            f"labels with shape {data.shape} need axes with {data.ndim} letters, got {axes!r}"
        )
    return axes


def _label_calibration(
    like: ImageData | None, label_axes: str
) -> tuple[dict[str, float], str | None]:
    if like is None or like.pixel_size is None:
        return {}, None
    sizes = dict(zip(like.spatial_axes, like.pixel_size, strict=True))
    return {a: s for a, s in sizes.items() if a in label_axes}, like.unit
