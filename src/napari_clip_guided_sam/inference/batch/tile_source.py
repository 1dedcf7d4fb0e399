"""Windows of one slice of an image, read and normalised one at a time: the tiled batch path
never reads a whole slice (docs/batch.md, "Tiling").

Each window is scaled to the model's uint8 RGB input with intensity statistics of the whole
slice (`data.normalize.slice_percentiles`, from a strided subsample) or of the stack, so
every window of a slice is scaled alike and no seam comes from the normalisation.
"""

from __future__ import annotations

import numpy as np

from ...data.axes import PLANE_AXES
from ...data.image import ImageData
from ...data.normalize import (
    NormalizeConfig,
    PercentileStats,
    slice_percentiles,
    to_model_rgb,
)
from ...data.slicing import take_slice
from ..tiles import Tile

__all__ = ["SliceWindows"]


class SliceWindows:
    """A `inference.tiled.TileSource` over slice ``index`` of ``image`` (numpy, dask or any
    array-like that can be sliced)."""

    def __init__(
        self,
        image: ImageData,
        index: tuple[int, ...],
        config: NormalizeConfig,
        stats: PercentileStats | None = None,
    ):
        self.image = image
        self.index = index
        self.config = config
        if stats is None and not self._passes_through():
            stats = slice_percentiles(image, index, config.percentiles, sample=config.sample)
        self.stats = stats

    @property
    def shape(self) -> tuple[int, int]:
        height, width = (self.image.shape[self.image.axes.index(a)] for a in PLANE_AXES)
        return int(height), int(width)

    def read(self, tile: Tile) -> np.ndarray:
        region = (slice(tile.y0, tile.y1), slice(tile.x0, tile.x1))
        data = take_slice(self.image.array, self.image.axes, self.index, region)
        return to_model_rgb(
            data,
            channel_axis=-1 if data.ndim == 3 else None,
            channels=self.config.channels,
            percentiles=self.config.percentiles,
            stats=self.stats,
        )

    def _passes_through(self) -> bool:
        """uint8 RGB(A) input is used as it is (`to_model_rgb`): no statistics needed."""
        channels = self.image.shape[self.image.axes.index("C")] if "C" in self.image.axes else 1
        chosen = self.config.channels in (None, (0, 1, 2))
        return np.dtype(self.image.array.dtype) == np.uint8 and channels in (3, 4) and chosen
