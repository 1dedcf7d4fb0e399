"""An image or stack in memory (or lazily on disk) with its axes and physical calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .axes import SPATIAL_AXES

__all__ = ["ImageData", "ImageReadError"]


class ImageReadError(ValueError):
    """A file could not be read as an image: corrupt, truncated or unsupported."""


@dataclass
class ImageData:
    """An image or stack with its axes and physical calibration.

    Attributes:
        array: the pixels, shape matching ``axes`` (a numpy array, or a dask array from
            :func:`read_image_lazy`).
        axes: one uppercase tifffile letter per array axis, e.g. ``"YX"``, ``"YXC"``,
            ``"ZYX"``, ``"TZCYX"``. ``C`` is the channel axis (RGB samples included).
        pixel_size: physical size of one pixel along each spatial axis present in ``axes``
            (Z, Y, X), in the order those axes appear in ``axes``; None if unknown.
        unit: unit of ``pixel_size`` (``"µm"`` for micrometres), None if unknown.
        path: the file it was read from, if any.
        metadata: anything else worth keeping (ImageJ metadata, OME-XML, source dtype).
    """

    array: Any
    axes: str
    pixel_size: tuple[float, ...] | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.axes = self.axes.upper()
        if len(self.axes) != self.array.ndim:
            raise ValueError(
                f"axes {self.axes!r} has {len(self.axes)} letters but the array has "
                f"{self.array.ndim} dimensions (shape {tuple(self.array.shape)})"
            )
        if len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} repeats a letter; each axis needs its own")
        if self.pixel_size is not None:
            self.pixel_size = tuple(float(s) for s in self.pixel_size)
            if len(self.pixel_size) != len(self.spatial_axes):
                raise ValueError(
                    f"pixel_size {self.pixel_size} needs one value per spatial axis "
                    f"{self.spatial_axes!r} of axes {self.axes!r}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``array``."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def spatial_axes(self) -> str:
        """The spatial axes (Z, Y, X) present, in array order, e.g. ``"ZYX"``."""
        return "".join(a for a in self.axes if a in SPATIAL_AXES)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis in ``array``, None if the image has no channel axis."""
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def name(self) -> str:
        """A short name for messages: the file name, or ``"<array>"``."""
        return self.path.name if self.path is not None else "<array>"

    def pixel_size_of(self, axis: str) -> float | None:
        """The physical pixel size along ``axis`` (``"X"``, ``"Y"`` or ``"Z"``), or None."""
        if self.pixel_size is None or axis not in self.spatial_axes:
            return None
        return self.pixel_size[self.spatial_axes.index(axis)]
