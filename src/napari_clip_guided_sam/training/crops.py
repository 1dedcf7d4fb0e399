"""Large training images become one window of the model's input size at full resolution
instead of being squashed (docs/architecture.md, "Tiling").

An image that inference would tile (`inference.tiles`, automatic rule: a side above 1.5
times the input size) is cut to one window of the tile plan inference uses, so the model
trains at the scale it is applied at. The window is drawn per sample from a generator
seeded by the sample's source and size: preparation stays deterministic (cached prepared
samples and the frozen-prefix cache rely on it), and different images of a folder give
windows at different places. Smaller images are unchanged.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..data.datasets import Sample
from ..inference.tiles import TilingConfig, plan_tiles

__all__ = ["training_window"]


def training_window(sample, input_size: int) -> Sample:
    """`sample` (image, mask, class_name, source, valid) cut to one window of the tile plan
    of its image when inference would tile it, else `sample` itself."""
    image = np.asarray(sample.image)
    plan = plan_tiles(image.shape[:2], input_size, TilingConfig())
    if not plan.tiled:
        return sample
    source = getattr(sample, "source", "")
    seed = zlib.crc32(f"{source}|{image.shape}".encode())
    tiles = list(plan.tiles())
    tile = tiles[int(np.random.default_rng(seed).integers(len(tiles)))]
    rows, cols = slice(tile.y0, tile.y1), slice(tile.x0, tile.x1)
    valid = getattr(sample, "valid", None)
    return Sample(
        image=image[rows, cols],
        mask=np.asarray(sample.mask)[rows, cols],
        class_name=sample.class_name,
        source=f"{source} window y{tile.y0}:{tile.y1} x{tile.x0}:{tile.x1}".strip(),
        valid=None if valid is None else np.asarray(valid)[rows, cols],
    )
