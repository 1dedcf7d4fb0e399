"""Planning tiles of a large image: windows of the model's size with a halo, and the weights
that blend them (docs/architecture.md, "Tiling").

An image larger than the model's input is cut into overlapping windows instead of being
squashed into one: each window is a *tile* (the part it is responsible for) plus a *halo* of
context on every side, as in micro-sam (`tile_shape`, `halo`). By default a window is exactly
the model's input size (tile = size - 2 * halo), so each window is segmented at full
resolution. Windows are spread evenly so that all of them lie inside the image and
neighbours overlap by at least twice the halo; probabilities are blended in the overlap with
weights that rise smoothly from 0 at a window's inner edge to 1 at one halo's depth, so no
seam is visible. No torch here: this module is pure geometry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUTO_TILING_FACTOR",
    "TILING_HELP",
    "TILING_MODES",
    "Tile",
    "TilePlan",
    "TilingConfig",
    "plan_tiles",
    "window_around",
]

# The tiling choices of the CLI and the widgets -> `TilingConfig.enabled`.
TILING_MODES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}
TILING_HELP = (
    "Large images are segmented in overlapping windows of the model's input size, at full "
    "resolution. auto: when a side is more than 1.5 times the input size; on: whenever "
    "larger than one window; off: squash to the input size."
)
# Tile automatically when the image's longer side exceeds this many model input sizes.
AUTO_TILING_FACTOR = 1.5
# Halo of the automatic tiling, as a fraction of the model's input size.
DEFAULT_HALO_FRACTION = 1 / 8
MIN_TILE_SIDE = 16  # model.preprocess.MIN_IMAGE_SIDE: a window must be segmentable


@dataclass(frozen=True)
class TilingConfig:
    """Whether and how to segment an image in tiles.

    Attributes:
        enabled: None tiles automatically when the image's longer side is more than
            `AUTO_TILING_FACTOR` times the model's input size; True tiles whenever the image
            is larger than one window; False never tiles (the whole image is resized to the
            model's input, as before tiling existed).
        tile_shape: (height, width) of the part each window is responsible for, in image
            pixels; None: the model's input size minus twice the halo.
        halo: (height, width) of the context added on each side of a tile; None: 1/8 of
            the model's input size.
    """

    enabled: bool | None = None
    tile_shape: tuple[int, int] | None = None
    halo: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("tile_shape", "halo"):
            value = getattr(self, name)
            if value is None:
                continue
            pair = _pair(value, name)
            object.__setattr__(self, name, pair)
        if self.halo is not None and min(self.halo) < 0:
            raise ValueError(f"the halo must be 0 or more pixels, got {self.halo}")
        if self.tile_shape is not None and min(self.tile_shape) < 1:
            raise ValueError(f"the tile shape must be positive, got {self.tile_shape}")
        if self.tile_shape is not None or self.halo is not None:
            halo = self.halo or (0, 0)
            tile = self.tile_shape or (MIN_TILE_SIDE, MIN_TILE_SIDE)
            window = min(t + 2 * h for t, h in zip(tile, halo, strict=True))
            if window < MIN_TILE_SIDE:
                raise ValueError(
                    f"tile shape {self.tile_shape} plus twice the halo {self.halo} gives windows "
                    f"of {window} pixels; windows need at least {MIN_TILE_SIDE}"
                )

    def resolved(self, input_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(tile shape, halo) in pixels for a model of input size `input_size`."""
        halo = self.halo
        if halo is None:
            side = int(input_size * DEFAULT_HALO_FRACTION)
            if self.tile_shape is not None:  # keep the halo smaller than the tile
                side = min(side, min(self.tile_shape) // 2)
            halo = (side, side)
        tile = self.tile_shape
        if tile is None:
            tile = (max(1, input_size - 2 * halo[0]), max(1, input_size - 2 * halo[1]))
        return tile, halo

    def applies(self, shape: tuple[int, int], input_size: int) -> bool:
        """Whether an image of `shape` (H, W) is segmented in tiles."""
        if self.enabled is False:
            return False
        tile, halo = self.resolved(input_size)
        windows = (tile[0] + 2 * halo[0], tile[1] + 2 * halo[1])
        larger = shape[0] > windows[0] or shape[1] > windows[1]
        if self.enabled:
            return larger
        return larger and max(shape) > AUTO_TILING_FACTOR * input_size

    def settings(self) -> dict:
        """The settings as plain JSON values (for reports; None: automatic)."""
        return {
            "mode": {None: "auto", True: "on", False: "off"}[self.enabled],
            "tile_shape": list(self.tile_shape) if self.tile_shape else None,
            "halo": list(self.halo) if self.halo else None,
        }


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise ValueError(f"{name} needs one or two numbers (height, width), got {value}")
    return values[0], values[1]


@dataclass(frozen=True)
class Tile:
    """One window of a plan: rows [y0, y1) and columns [x0, x1) of the image."""

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def contains(self, points_xy: np.ndarray) -> np.ndarray:
        """Which (x, y) image points [n, 2] lie inside this window: bool [n]."""
        points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        x, y = points_xy[:, 0], points_xy[:, 1]
        return (x >= self.x0) & (x < self.x1) & (y >= self.y0) & (y < self.y1)

    def contains_box(self, box_xyxy: np.ndarray) -> bool:
        """Whether the (x0, y0, x1, y1) image box lies wholly inside this window."""
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box_xyxy).reshape(4))
        return x0 >= self.x0 and y0 >= self.y0 and x1 <= self.x1 and y1 <= self.y1


def _starts(length: int, window: int, tile: int) -> list[int]:
    """Evenly spaced window starts covering [0, length), neighbours at most `tile` apart."""
    if length <= window:
        return [0]
    count = math.ceil((length - window) / tile) + 1
    return [int(round(s)) for s in np.linspace(0, length - window, count)]


def _ramp(length: int, halo: int, left: bool, right: bool) -> np.ndarray:
    """1D blending weights of a window: a raised-cosine rise over `halo` pixels at each
    edge that is inside the image, 1 elsewhere (never 0, so every pixel has a weight)."""
    weights = np.ones(length, dtype=np.float32)
    depth = min(halo, length // 2)
    if depth < 1:
        return weights
    rise = np.sin(0.5 * np.pi * (np.arange(depth) + 0.5) / depth) ** 2
    if left:
        weights[:depth] = rise
    if right:
        weights[length - depth :] = np.minimum(weights[length - depth :], rise[::-1])
    return weights


@dataclass(frozen=True)
class TilePlan:
    """Windows over an image of `shape` (H, W), in rows and columns of windows."""

    shape: tuple[int, int]
    tile_shape: tuple[int, int]
    halo: tuple[int, int]
    row_spans: tuple[tuple[int, int], ...]  # [y0, y1) of each row of windows
    col_spans: tuple[tuple[int, int], ...]  # [x0, x1) of each column of windows

    @property
    def n_tiles(self) -> int:
        return len(self.row_spans) * len(self.col_spans)

    @property
    def tiled(self) -> bool:
        """False when one window is the whole image (the untiled path)."""
        return self.n_tiles > 1

    def tiles(self) -> Iterator[Tile]:
        """Every window, row by row."""
        for row, (y0, y1) in enumerate(self.row_spans):
            for col, (x0, x1) in enumerate(self.col_spans):
                yield Tile(row, col, y0, y1, x0, x1)

    def row_tiles(self, row: int) -> list[Tile]:
        y0, y1 = self.row_spans[row]
        return [Tile(row, col, y0, y1, x0, x1) for col, (x0, x1) in enumerate(self.col_spans)]

    def weights(self, tile: Tile) -> np.ndarray:
        """Blending weights of a window: float32 [h, w] in (0, 1]."""
        height, width = self.shape
        wy = _ramp(tile.y1 - tile.y0, self.halo[0], tile.y0 > 0, tile.y1 < height)
        wx = _ramp(tile.x1 - tile.x0, self.halo[1], tile.x0 > 0, tile.x1 < width)
        return wy[:, None] * wx[None, :]

    def final_rows_after(self, row: int) -> int:
        """Rows above this one are final once window row `row` is blended (no later
        window reaches them)."""
        return self.row_spans[row + 1][0] if row + 1 < len(self.row_spans) else self.shape[0]


def plan_tiles(shape: tuple[int, int], input_size: int, config: TilingConfig) -> TilePlan:
    """Windows over an image of `shape` (H, W) for a model of input size `input_size`.

    When `config` does not tile this image, the plan is one window: the whole image.
    """
    height, width = (int(s) for s in shape)
    tile, halo = config.resolved(input_size)
    if not config.applies((height, width), input_size):
        return TilePlan((height, width), (height, width), (0, 0), ((0, height),), ((0, width),))
    spans = []
    for length, t, h in ((height, tile[0], halo[0]), (width, tile[1], halo[1])):
        window = min(length, t + 2 * h)
        spans.append(tuple((s, s + window) for s in _starts(length, window, t)))
    return TilePlan((height, width), tile, halo, spans[0], spans[1])


def window_around(shape: tuple[int, int], box_xyxy: np.ndarray, window: tuple[int, int]) -> Tile:
    """A window of size `window` (h, w) centred on a box (x0, y0, x1, y1), moved inside an
    image of `shape`: for a prompt no planned window holds whole (re-centring)."""
    height, width = shape
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box_xyxy).reshape(4))
    wh, ww = min(window[0], height), min(window[1], width)
    top = int(round((y0 + y1) / 2 - wh / 2))
    left = int(round((x0 + x1) / 2 - ww / 2))
    top = min(max(top, 0), height - wh)
    left = min(max(left, 0), width - ww)
    return Tile(0, 0, top, top + wh, left, left + ww)
