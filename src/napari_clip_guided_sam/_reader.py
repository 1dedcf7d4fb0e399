"""npe2 reader: label TIFFs written by this plugin open as Labels with their pixel size.

napari's built-in TIFF reader ignores physical pixel sizes, so a stack segmented by
`clip-guided-sam segment` would open at scale 1. Only files named like our outputs
(`*_labels.tif`…) are claimed; napari lets the user choose between readers for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data.axes import SPATIAL_AXES
from .data.formats import LABEL_SUFFIX, image_stem, is_tiff
from .data.reader import read_image, read_image_lazy
from .data.units import length_unit

EAGER_LOAD_BYTES = 512 * 2**20  # larger label outputs open lazily (memory-mapped)


def get_label_output_reader(path: str | list[str]):
    """npe2 reader: label files written by `segment` open as Labels with their pixel size."""
    if isinstance(path, list) or not is_label_output(path):
        return None
    return read_label_output


def is_label_output(path: str) -> bool:
    """Whether `path` is named like a label file of `segment` (`a_labels.tif`, ...)."""
    return is_tiff(path) and image_stem(path).endswith(LABEL_SUFFIX)


def read_label_output(path: str) -> list[tuple]:
    """``[(labels, {"scale", "units", "name"}, "labels")]`` for one label TIFF."""
    image = read_label_file(path)
    scale = [image.pixel_size_of(a) or 1.0 for a in image.axes]
    attributes: dict[str, Any] = {"scale": scale, "name": Path(path).name.split(".")[0]}
    unit = length_unit(image.unit)
    if unit is not None and set(image.axes) <= set(SPATIAL_AXES):
        attributes["units"] = unit.name
    return [(image.array, attributes, "labels")]


def read_label_file(path: str | Path):
    """The label file as ImageData: in memory when small, memory-mapped when large."""
    small = Path(path).stat().st_size < EAGER_LOAD_BYTES
    return read_image(path) if small else read_image_lazy(path)
