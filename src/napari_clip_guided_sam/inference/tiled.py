"""Segmenting a large image window by window, with one similarity scale for the whole image
(docs/architecture.md, "Tiling"). The windows and their blending weights are
`inference.tiles`; this module runs the predictor over them.

Two passes over the windows of a `tiles.TilePlan`:

1. CLIP runs on every window and the range (minimum, maximum) of its raw patch similarities
   to each class is gathered over all windows (`similarity_bounds`). Every window's map is
   min-max normalised with these bounds, so the map of a tiled image is normalised over the
   whole image, as an untiled image's is. Normalising each window on its own would stretch
   a window without the object to [0, 1] and invent prompts there.
2. Each window is segmented (`Predictor.predict` with `similarity_bounds`: a class without
   a map pixel above the similarity threshold and without clicks gets no mask there) and
   its probabilities are blended into the image with the plan's weights.

Windows are processed row by row; rows of the image that no later window reaches are
released as a `Band` at once, so memory holds one row of windows, not the image's float
maps. Clicks go to every window that contains them (the halo makes neighbours share those
near an edge); a window without clicks is prompted by the text alone, as a slice without
clicks in a stack.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..data.class_map import LabelTable
from .tiles import Tile, TilePlan

if TYPE_CHECKING:
    from .predictions import Prediction

__all__ = [
    "ArrayTiles",
    "Band",
    "TileSource",
    "iter_bands",
    "labels_of_band",
    "segment_tiled",
    "similarity_bounds",
    "tiled_labels",
]


class TileSource(Protocol):
    """Where windows of the model's uint8 RGB input come from."""

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the whole image."""
        ...

    def read(self, tile: Tile) -> np.ndarray:
        """uint8 RGB [h, w, 3] of one window."""
        ...


class ArrayTiles:
    """Windows of an RGB image in memory (or any array-like sliced lazily)."""

    def __init__(self, rgb: Any):
        self.rgb = rgb

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def read(self, tile: Tile) -> np.ndarray:
        return np.ascontiguousarray(self.rgb[tile.y0 : tile.y1, tile.x0 : tile.x1])


class TilePredictor(Protocol):
    """What tiling needs of a predictor (`inference.predictor.Predictor`)."""

    def set_image(self, rgb: np.ndarray) -> str: ...

    def similarity_range(self, class_names: Sequence[str]) -> np.ndarray: ...

    def predict(
        self,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
        *,
        similarity_bounds: np.ndarray | None = None,
    ) -> Any: ...


@dataclass
class Band:
    """Blended results of image rows [start, stop), all columns."""

    start: int
    stop: int
    probabilities: np.ndarray  # float32 [K, stop - start, W]
    similarity_maps: np.ndarray | None  # float32 [K, stop - start, W], when asked for


def similarity_bounds(
    predictor: TilePredictor, source: TileSource, plan: TilePlan, class_names: Sequence[str]
) -> np.ndarray:
    """(low, high) of each class's raw patch similarities over every window: [K, 2]."""
    bounds = np.array([[np.inf, -np.inf]] * len(class_names), dtype=np.float64)
    for tile in plan.tiles():
        predictor.set_image(source.read(tile))
        window = predictor.similarity_range(class_names)
        bounds[:, 0] = np.minimum(bounds[:, 0], window[:, 0])
        bounds[:, 1] = np.maximum(bounds[:, 1], window[:, 1])
    return bounds.astype(np.float32)


def iter_bands(
    predictor: TilePredictor,
    source: TileSource,
    plan: TilePlan,
    class_names: Sequence[str],
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    *,
    bounds: np.ndarray | None = None,
    with_maps: bool = False,
) -> Generator[Band, None, np.ndarray]:
    """Segment `source` window by window; yields the image's rows as they become final.

    points: [n, 2] (x, y) image pixels with point_labels [n] (1 positive, 0 negative), or
    None for text only. bounds: the similarity bounds ([K, 2], `similarity_bounds`), computed
    here when not given. with_maps: also blend the similarity maps (for display).

    Returns (as the generator's value) SAM's predicted IoU per class [K], averaged over the
    windows weighted by the mask area each contributes (0 for a class found nowhere).
    """
    names = list(class_names)
    if bounds is None:
        bounds = similarity_bounds(predictor, source, plan, names)
    width = plan.shape[1]
    start = 0  # first image row held in the accumulators
    numerator = np.zeros((len(names), 0, width), np.float32)
    maps = np.zeros((len(names), 0, width), np.float32) if with_maps else None
    weight = np.zeros((0, width), np.float32)
    iou_sum = np.zeros(len(names), np.float64)
    area_sum = np.zeros(len(names), np.float64)
    for row in range(len(plan.row_spans)):
        grow = plan.row_spans[row][1] - start - weight.shape[0]
        if grow > 0:
            numerator = _extend(numerator, grow)
            maps = _extend(maps, grow) if maps is not None else None
            weight = _extend(weight, grow)
        for tile in plan.row_tiles(row):
            predictor.set_image(source.read(tile))
            tile_points, tile_labels = _points_in(tile, points, point_labels)
            prediction = predictor.predict(
                names, tile_points, tile_labels, similarity_bounds=bounds
            )
            blend = plan.weights(tile)
            rows = slice(tile.y0 - start, tile.y1 - start)
            cols = slice(tile.x0, tile.x1)
            numerator[:, rows, cols] += prediction.probabilities * blend
            if maps is not None:
                maps[:, rows, cols] += prediction.similarity_maps * blend
            weight[rows, cols] += blend
            area = (prediction.probabilities > 0.5).sum(axis=(1, 2))
            iou_sum += prediction.iou_predictions * area
            area_sum += area
        done = plan.final_rows_after(row) - start
        total = weight[:done]
        yield Band(
            start,
            start + done,
            numerator[:, :done] / total,
            maps[:, :done] / total if maps is not None else None,
        )
        numerator, weight = numerator[:, done:].copy(), weight[done:].copy()
        maps = maps[:, done:].copy() if maps is not None else None
        start += done
    mean_iou = np.divide(iou_sum, area_sum, out=np.zeros_like(iou_sum), where=area_sum > 0)
    return mean_iou.astype(np.float32)


def labels_of_band(
    probabilities: np.ndarray, threshold: float, class_names: Sequence[str], table: LabelTable
) -> np.ndarray:
    """[K, h, W] blended probabilities -> int32 [h, W] labels, by the predictor's rule."""
    import torch

    from .predictions import labels_from_probabilities

    values = torch.tensor([table.values[n] for n in class_names], dtype=torch.int32)
    labels = labels_from_probabilities(
        torch.from_numpy(probabilities), threshold, values, table.unlabelled
    )
    return labels.numpy()


def tiled_labels(
    predictor: TilePredictor,
    source: TileSource,
    plan: TilePlan,
    class_names: Sequence[str],
    table: LabelTable,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    threshold: float = 0.5,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The label image [H, W] of a tiled image, written band by band into `out` (default: a
    new array of the smallest unsigned type for `table`): no float map of the whole image
    is ever held, only one row of windows' (the memory-bounded path of batch runs)."""
    if out is None:
        largest = max([table.unlabelled, *table.values.values()])
        out = np.zeros(plan.shape, np.uint8 if largest < 256 else np.uint16)
    bands = iter_bands(predictor, source, plan, class_names, points, point_labels)
    for band in bands:
        labels = labels_of_band(band.probabilities, threshold, class_names, table)
        out[band.start : band.stop] = labels
    return out


def segment_tiled(
    predictor: TilePredictor,
    source: TileSource,
    plan: TilePlan,
    class_names: Sequence[str],
    table: LabelTable,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    threshold: float = 0.5,
) -> Prediction:
    """The whole image's `Prediction` (probabilities and similarity maps for display), for
    the interactive path (`Predictor.segment`); batch runs use `tiled_labels`."""
    from .predictions import Prediction

    names = list(class_names)
    bands = iter_bands(predictor, source, plan, names, points, point_labels, with_maps=True)
    parts, ious = collect_bands(bands)
    probabilities = np.concatenate([band.probabilities for band in parts], axis=1)
    maps = np.concatenate([band.similarity_maps for band in parts], axis=1)
    return Prediction(
        labels=labels_of_band(probabilities, threshold, names, table),
        probabilities=probabilities,
        similarity_maps=maps,
        class_names=names,
        iou_predictions=ious,
        label_table=table,
    )


def collect_bands(bands: Generator[Band, None, np.ndarray]) -> tuple[list[Band], np.ndarray]:
    """Every band of `iter_bands` and its return value (the IoU per class)."""
    items = []
    while True:
        try:
            items.append(next(bands))
        except StopIteration as stop:
            return items, stop.value


def _extend(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with `rows` zero rows appended along its row axis (second to last)."""
    shape = list(array.shape)
    shape[-2] = rows
    return np.concatenate([array, np.zeros(shape, array.dtype)], axis=-2)


def _points_in(
    tile: Tile, points: np.ndarray | None, point_labels: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The clicks inside a window, in its own pixel coordinates (None: no click there)."""
    if points is None or len(points) == 0:
        return None, None
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = tile.contains(points)
    if not inside.any():
        return None, None
    shifted = points[inside] - np.array([tile.x0, tile.y0], dtype=np.float64)
    labels = None if point_labels is None else np.asarray(point_labels).reshape(-1)[inside]
    return shifted, labels
