"""Objects of a large image, each segmented in a window around its own prompts
(docs/architecture.md, "Tiling").

An object's clicks, box and mask say where it is, so it needs no pass over the whole image:
its window is the prompts' extent plus a halo on every side, at least the model's input
size, re-centred to lie inside the image (`tiles.window_around`). The window is segmented
at full resolution (larger only when the object's extent is), its prompts moved into the
window's pixels, and the masks put back into the image frame. An object reaching across
the edge of a tile plan's window is thus never cut. An object without any prompt of its own
(the text alone) has no place; it is segmented on the whole image, resized, as before
tiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .objects import ObjectPrompt
from .predictions import ObjectPrediction
from .tiles import Tile, window_around

if TYPE_CHECKING:
    from .predictor import Predictor

__all__ = ["object_window", "segment_objects_in_windows"]


def object_window(
    prompt: ObjectPrompt, shape: tuple[int, int], input_size: int, halo: tuple[int, int]
) -> Tile | None:
    """The window of an image of `shape` (H, W) that holds `prompt` plus `halo` (None: the
    prompt has no click, box or mask)."""
    xs, ys = list(prompt.points[:, 0]), list(prompt.points[:, 1])
    if prompt.box is not None:
        xs += [prompt.box[0], prompt.box[2]]
        ys += [prompt.box[1], prompt.box[3]]
    if prompt.mask is not None and prompt.mask.any():
        rows, cols = np.nonzero(prompt.mask)
        xs += [cols.min(), cols.max() + 1]
        ys += [rows.min(), rows.max() + 1]
    if not xs:
        return None
    extent = np.array([min(xs), min(ys), max(xs), max(ys)], dtype=np.float64)
    size = (
        max(input_size, int(np.ceil(extent[3] - extent[1])) + 2 * halo[0]),
        max(input_size, int(np.ceil(extent[2] - extent[0])) + 2 * halo[1]),
    )
    return window_around(shape, extent, size)


def _moved(prompt: ObjectPrompt, window: Tile) -> ObjectPrompt:
    """`prompt` in the pixels of `window`."""
    shift = np.array([window.x0, window.y0], dtype=np.float64)
    return ObjectPrompt(
        points=prompt.points - shift,
        point_labels=prompt.point_labels,
        box=None if prompt.box is None else prompt.box - np.tile(shift, 2),
        mask=None
        if prompt.mask is None
        else prompt.mask[window.y0 : window.y1, window.x0 : window.x1],
    )


def segment_objects_in_windows(
    predictor: Predictor,
    rgb: np.ndarray,
    class_name: str,
    objects: Sequence[ObjectPrompt],
    halo: tuple[int, int],
    *,
    text_guide: bool,
    threshold: float,
    select: bool,
) -> ObjectPrediction:
    """`Predictor.predict_objects` of a large image, one window per object (see above)."""

    height, width = rgb.shape[:2]
    probabilities = np.zeros((len(objects), height, width), np.float32)
    masks = np.zeros((len(objects), height, width), bool)
    ious = np.zeros(len(objects), np.float32)
    for index, prompt in enumerate(objects):
        window = object_window(prompt, (height, width), predictor.input_size, halo)
        if window is None:  # the text alone: the whole image, resized
            window, moved = Tile(0, 0, 0, height, 0, width), prompt
        else:
            moved = _moved(prompt, window)
        rows, cols = slice(window.y0, window.y1), slice(window.x0, window.x1)
        predictor.set_image(np.ascontiguousarray(rgb[rows, cols]))
        part = predictor.predict_objects(
            class_name, [moved], text_guide=text_guide, threshold=threshold, select=select
        )
        probabilities[index, rows, cols] = part.probabilities[0]
        masks[index, rows, cols] = part.masks[0]
        ious[index] = part.iou_predictions[0]
    return ObjectPrediction(masks, probabilities, ious, class_name)
