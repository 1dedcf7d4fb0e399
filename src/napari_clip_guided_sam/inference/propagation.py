"""Following one object through a stack (Z or T), slice by slice, from a mask on one slice.

Each step prompts the next slice with what the previous slice's mask says about the object
(`prompts_from_mask`: its box, a few interior points, the mask itself as SAM's dense prompt),
keeps of the new mask the objects that overlap the previous one (`continuing_pieces`), and
accepts it only while SAM's predicted IoU and the overlap (IoU) with the previous mask stay
above thresholds; the first slice that fails stops that direction. Both
directions run from the start slice, and the object keeps one id (the caller commits the
masks under it, `inference.annotation.ObjectAnnotations.commit`).

`propagate` is a generator of `PropagationStep` events, like every long job of the project
(docs/architecture.md, "Long jobs: generators of events"): a GUI runs it in a worker and
cancels by closing it; the steps carry the accepted masks, so a cancelled run keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage as ndi

from .instances import split_instances
from .objects import ObjectPrompt

__all__ = [
    "PropagationConfig",
    "PropagationResult",
    "PropagationStep",
    "continuing_pieces",
    "mask_iou",
    "prompts_from_mask",
    "propagate",
]

SliceSource = Callable[[int], np.ndarray]  # position along the axis -> uint8 RGB [H, W, 3]


class ObjectSegmenter(Protocol):
    """What propagation needs of a predictor (`inference.predictor.Predictor`)."""

    def segment_objects(
        self, rgb, class_name, objects, *, text_guide=True, threshold=0.5, select=True
    ): ...


@dataclass(frozen=True)
class PropagationConfig:
    """How the previous slice's mask prompts the next slice, and when to stop.

    Attributes:
        use_box: the mask's bounding box (grown by ``box_margin`` of its size per side).
        n_points: positive points inside the mask (0: none): the deepest pixel of its
            distance transform, then the core pixels farthest from those already chosen.
        use_mask: the mask itself as SAM's dense prompt (instead of the text's map).
        text_guide: the class's similarity map as dense prompt when ``use_mask`` is off.
        min_predicted_iou: stop when SAM's predicted IoU of the new mask is below this.
        min_overlap: stop when the IoU of the new mask with the previous one is below this
            (the object vanished, or the mask jumped to something else).
        max_steps: slices to go at most in each direction (None: to the stack's ends).
        threshold: mask probability threshold.
    """

    use_box: bool = True
    n_points: int = 3
    use_mask: bool = True
    text_guide: bool = False
    box_margin: float = 0.1
    min_predicted_iou: float = 0.5
    min_overlap: float = 0.3
    max_steps: int | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not (self.use_box or self.n_points > 0 or self.use_mask):
            raise ValueError("Propagation needs a prompt: a box, points or the mask.")
        if self.n_points < 0 or self.box_margin < 0:
            raise ValueError("n_points and box_margin must be >= 0.")
        for name in ("min_predicted_iou", "min_overlap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}.")


@dataclass(frozen=True)
class PropagationStep:
    """One slice tried: its scores, and its mask when accepted."""

    position: int
    direction: int  # +1 towards higher positions, -1 towards lower ones
    predicted_iou: float
    overlap: float  # IoU with the previous slice's mask
    accepted: bool
    mask: np.ndarray | None  # bool [H, W] when accepted
    done: int  # slices tried so far
    total: int  # slices that could be tried at most
    reason: str = ""  # why this direction stops here ("" while it goes on)


@dataclass
class PropagationResult:
    """The object's masks by position (the start slice included) and why each direction
    ended."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    predicted_iou: dict[int, float] = field(default_factory=dict)
    stopped: dict[int, str] = field(default_factory=dict)  # direction -> reason

    @property
    def positions(self) -> list[int]:
        return sorted(self.masks)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 for two empty masks)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def prompts_from_mask(mask: np.ndarray, config: PropagationConfig) -> ObjectPrompt:
    """The prompts a mask gives for the next slice (box, interior points, the mask)."""
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        raise ValueError("The object's mask is empty: nothing to propagate.")
    box = _grown_box(mask, config.box_margin) if config.use_box else None
    points = _interior_points(mask, config.n_points)
    return ObjectPrompt(
        points=points,
        point_labels=np.ones(len(points), dtype=np.int64),
        box=box,
        mask=mask if config.use_mask else None,
    )


def propagate(
    predictor: ObjectSegmenter,
    slice_rgb: SliceSource,
    n_positions: int,
    start: int,
    mask: np.ndarray,
    class_name: str,
    config: PropagationConfig | None = None,
) -> Generator[PropagationStep, None, PropagationResult]:
    """Segment the object of ``mask`` (on slice ``start``) on the slices before and after.

    Args:
        predictor: a `Predictor` (its embedding cache makes a second run over the same
            slices decoder-only).
        slice_rgb: the model's uint8 RGB input of the slice at a position along the axis.
        n_positions: slices along the axis; start: the slice ``mask`` is on.
        mask: bool [H, W], the object on slice ``start`` (e.g. a committed object).
        class_name: the object's class (its image embedding is the class's).

    Yields:
        A `PropagationStep` per slice tried; a direction ends at its first rejected slice,
        at the stack's end or after ``config.max_steps``.

    Returns:
        `PropagationResult`.
    """
    config = config or PropagationConfig()
    if not 0 <= start < n_positions:
        raise ValueError(f"Start slice {start} is outside the stack (0..{n_positions - 1}).")
    mask = np.asarray(mask).astype(bool)
    prompts_from_mask(mask, config)  # an empty mask fails before any work
    limit = config.max_steps or n_positions
    plans = {+1: range(start + 1, min(n_positions, start + 1 + limit))}
    plans[-1] = range(start - 1, max(-1, start - 1 - limit), -1)
    total = len(plans[+1]) + len(plans[-1])
    result = PropagationResult(masks={start: mask})
    done = 0
    for direction, positions in plans.items():
        previous = mask
        last = n_positions - 1 if direction > 0 else 0
        reaches_end = not positions or positions[-1] == last
        result.stopped[direction] = "end of stack" if reaches_end else f"{limit} slices done"
        for position in positions:
            prediction = predictor.segment_objects(
                slice_rgb(position),
                class_name,
                [prompts_from_mask(previous, config)],
                text_guide=config.text_guide,
                threshold=config.threshold,
                select=False,
            )
            new = continuing_pieces(prediction.masks[0], previous)
            predicted = float(prediction.iou_predictions[0])
            overlap = mask_iou(new, previous)
            reason = _stop_reason(new, predicted, overlap, config)
            done += 1
            accepted = not reason
            yield PropagationStep(
                position,
                direction,
                predicted,
                overlap,
                accepted,
                new if accepted else None,
                done,
                total,
                reason,
            )
            if not accepted:
                result.stopped[direction] = f"{reason} at slice {position}"
                break
            result.masks[position] = new
            result.predicted_iou[position] = predicted
            previous = new
    return result


def continuing_pieces(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The objects of ``mask`` (`split_instances`, watershed) that overlap ``previous``.

    A fine-tuned model segments its whole class; the object followed is what continues
    the previous slice's mask, not the other objects of its class on this slice.
    """
    pieces = split_instances(mask)
    kept = np.unique(pieces[previous & (pieces > 0)])
    return np.isin(pieces, kept) & (pieces > 0)


def _stop_reason(
    mask: np.ndarray, predicted_iou: float, overlap: float, config: PropagationConfig
) -> str:
    if not mask.any():
        return "empty mask"
    if predicted_iou < config.min_predicted_iou:
        return f"predicted IoU {predicted_iou:.2f} < {config.min_predicted_iou:g}"
    if overlap < config.min_overlap:
        return f"overlap {overlap:.2f} with the previous slice < {config.min_overlap:g}"
    return ""


def _grown_box(mask: np.ndarray, margin: float) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
    grow_y, grow_x = margin * (y1 - y0 + 1), margin * (x1 - x0 + 1)
    height, width = mask.shape
    return np.array(
        [
            max(0.0, x0 - grow_x),
            max(0.0, y0 - grow_y),
            min(float(width), x1 + 1 + grow_x),
            min(float(height), y1 + 1 + grow_y),
        ]
    )


def _interior_points(mask: np.ndarray, count: int) -> np.ndarray:
    """``count`` (x, y) points well inside the mask, spread out (farthest-point order)."""
    if count == 0:
        return np.empty((0, 2))
    distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    core = np.argwhere(distance >= 0.5 * distance.max())  # (row, col)
    chosen = [np.unravel_index(int(np.argmax(distance)), mask.shape)]
    gap = np.full(len(core), np.inf)
    for _ in range(1, min(count, len(core))):
        gap = np.minimum(gap, np.hypot(*(core - np.asarray(chosen[-1])).T))
        chosen.append(tuple(core[int(np.argmax(gap))]))
    return np.array([[col, row] for row, col in chosen], dtype=np.float64)
