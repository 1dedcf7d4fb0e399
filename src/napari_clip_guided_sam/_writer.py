"""napari writer for labels layers: TIFF that keeps the layer's scale as the pixel size.

napari's built-in TIFF writer stores only the pixels, so a labels layer saved with it loses
its physical calibration; this writer goes through `data.io.write_labels` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data.io import ImageData, write_labels

AXES_BY_NDIM = {2: "YX", 3: "ZYX", 4: "TZYX"}
UNIT_NAMES = {
    **dict.fromkeys(("micrometer", "micrometre", "micron", "um", "µm", "μm"), "µm"),
    **dict.fromkeys(("nanometer", "nanometre", "nm"), "nm"),
    **dict.fromkeys(("millimeter", "millimetre", "mm"), "mm"),
}


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one labels layer (`data` [..., Y, X]) to `path`; returns the path written."""
    labels = np.asarray(data)
    axes = AXES_BY_NDIM.get(labels.ndim)
    if axes is None:
        raise ValueError(f"Labels of {labels.ndim} dimensions cannot be saved as TIFF here.")
    scale = [float(s) for s in meta.get("scale", [1.0] * labels.ndim)]
    spatial = [i for i, axis in enumerate(axes) if axis in "ZYX"]
    like = ImageData(
        np.broadcast_to(np.zeros((), labels.dtype), labels.shape),
        axes,
        pixel_size=tuple(scale[i] for i in spatial),
        unit=_unit(meta.get("units")),
    )
    return [str(write_labels(path, labels, like, overwrite=True))]


def _unit(units: Any) -> str | None:
    """napari's units (pint objects or strings) -> "µm", "nm", "mm", or None (pixels)."""
    if not units:
        return None
    names = {str(unit).strip().lower() for unit in units}
    if len(names) != 1:
        return None
    return UNIT_NAMES.get(names.pop())
