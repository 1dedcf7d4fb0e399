"""npe2 reader: label TIFFs written by this plugin open as Labels with their pixel size.

napari's built-in TIFF reader ignores physical pixel sizes, so a stack segmented by
`clip-guided-sam segment` would open at scale 1. Only files named like our outputs
(`*_labels.tif`…) are claimed; napari lets the user choose between readers for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data.io import read_image, read_image_lazy

EAGER_LOAD_BYTES = 512 * 2**20  # larger label outputs open lazily (memory-mapped)
LABEL_OUTPUT_PATTERNS = ("*_labels.tif", "*_labels.tiff", "*_labels.ome.tif", "*_labels.ome.tiff")
_LABEL_ENDINGS = tuple(pattern[1:] for pattern in LABEL_OUTPUT_PATTERNS)
_PINT_UNITS = {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter", "m": "meter"}


def get_label_output_reader(path: str | list[str]):
    """npe2 reader: label files written by `segment` open as Labels with their pixel size."""
    if isinstance(path, list) or not str(path).lower().endswith(_LABEL_ENDINGS):
        return None
    return read_label_output


def read_label_output(path: str) -> list[tuple]:
    """``[(labels, {"scale", "units", "name"}, "labels")]`` for one label TIFF."""
    image = read_label_file(path)
    scale = [image.pixel_size_of(a) or 1.0 for a in image.axes]
    attributes: dict[str, Any] = {"scale": scale, "name": Path(path).name.split(".")[0]}
    if image.unit in _PINT_UNITS and set(image.axes) <= set("ZYX"):
        attributes["units"] = _PINT_UNITS[image.unit]
    return [(image.array, attributes, "labels")]


def read_label_file(path: str | Path):
    """The label file as ImageData: in memory when small, memory-mapped when large."""
    small = Path(path).stat().st_size < EAGER_LOAD_BYTES
    return read_image(path) if small else read_image_lazy(path)
