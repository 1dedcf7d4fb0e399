"""napari writer for labels layers: TIFF that keeps the layer's scale as the pixel size.

napari's built-in TIFF writer stores only the pixels, so a labels layer saved with it loses
its physical calibration; this writer goes through `data.label_writer.write_labels` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data.axes import SPATIAL_AXES, default_axes
from .data.image import ImageData
from .data.label_writer import write_labels
from .data.units import length_unit


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one labels layer (`data` [..., Y, X]) to `path`; returns the path written."""
    labels = np.asarray(data)
    axes = default_axes(labels.ndim)
    if axes is None:
        raise ValueError(f"Labels of {labels.ndim} dimensions cannot be saved as TIFF here.")
    scale = [float(s) for s in meta.get("scale", [1.0] * labels.ndim)]
    spatial = [i for i, axis in enumerate(axes) if axis in SPATIAL_AXES]
    like = ImageData(
        np.broadcast_to(np.zeros((), labels.dtype), labels.shape),
        axes,
        pixel_size=tuple(scale[i] for i in spatial),
        unit=_unit(meta.get("units")),
    )
    return [str(write_labels(path, labels, like, overwrite=True))]


def _unit(units: Any) -> str | None:
    """napari's units (pint objects or strings) -> a length unit ("µm"...), or None when
    they are not one length unit (pixels, or different units per axis)."""
    if not units:
        return None
    known = {length_unit(unit) for unit in units}
    if len(known) != 1:
        return None
    unit = known.pop()
    return unit.symbol if unit is not None else None
