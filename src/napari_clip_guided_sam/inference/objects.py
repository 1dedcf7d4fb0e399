"""Prompts of single objects (clicks, boxes, a mask to start from) and the objects of a class.

The object workflow segments one object at a time: its prompts are the user's clicks, a
box and/or a mask (a previous slice's mask when propagating, an instance being corrected),
with or without the class's text guide (`Predictor.predict_objects`). A class's text prompt
can also give every instance of the class at once (`instances_from_text`). No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .instances import InstanceConfig, split_instances

if TYPE_CHECKING:
    from .predictions import Prediction

__all__ = [
    "InstancesFromText",
    "ObjectPrompt",
    "instances_from_text",
    "object_prompts",
    "rectangle_to_box",
    "select_object",
]


@dataclass(frozen=True)
class ObjectPrompt:
    """What the user gave for one object, in original pixel coordinates.

    Attributes:
        points: ``float [n, 2]`` clicks as (x, y); n may be 0.
        point_labels: ``int [n]``: 1 positive, 0 negative.
        box: ``float [4]`` (x0, y0, x1, y1), or None.
        mask: ``bool [H, W]`` a mask to start from (SAM's dense prompt), or None.
    """

    points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    box: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(self.point_labels).reshape(-1)
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} points but {len(labels)} point labels.")
        if not np.isfinite(points).all():
            raise ValueError("Click coordinates must be finite numbers (no NaN or infinity).")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("Point labels must be 1 (positive) or 0 (negative).")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "point_labels", labels.astype(np.int64))
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,):
                raise ValueError(f"A box is (x0, y0, x1, y1), got {box.shape[0]} numbers.")
            object.__setattr__(self, "box", box)
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.ndim != 2:
                raise ValueError(f"A mask prompt is [H, W], got shape {mask.shape}.")
            object.__setattr__(self, "mask", mask)

    @property
    def has_user_prompt(self) -> bool:
        """Whether any click, box or mask was given (else only the text can prompt)."""
        return len(self.points) > 0 or self.box is not None or self.mask is not None


def select_object(mask: np.ndarray, prompt: ObjectPrompt) -> np.ndarray:
    """The part of a mask that one object's prompts point at.

    A fine-tuned model segments its class: a click on one nucleus gives every nucleus. The
    object is what its prompts select from that mask: the pixels inside its box (when it
    has one), and of those the objects (`split_instances`, watershed) that hold one of its
    positive clicks (when it has any; none hit: empty). Without a box or a positive click
    the mask is kept whole.

    Args:
        mask: ``bool [H, W]``; prompt: the object's prompts in the same pixel frame.
    """
    selected = np.asarray(mask).astype(bool)
    rows, cols = slice(None), slice(None)
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        rows = slice(max(0, int(np.ceil(y0))), max(0, int(np.floor(y1)) + 1))
        cols = slice(max(0, int(np.ceil(x0))), max(0, int(np.floor(x1)) + 1))
        inside = np.zeros_like(selected)
        inside[rows, cols] = True
        selected = selected & inside
    positives = prompt.points[prompt.point_labels == 1]
    if len(positives) == 0 or not selected.any():
        return selected
    crop = selected[rows, cols]
    pieces = split_instances(crop)
    top, left = rows.start or 0, cols.start or 0
    hit = set()
    for x, y in positives:
        row, col = int(round(y)) - top, int(round(x)) - left
        if 0 <= row < crop.shape[0] and 0 <= col < crop.shape[1]:
            hit.add(int(pieces[row, col]))
    hit.discard(0)
    selected = np.zeros_like(selected)
    selected[rows, cols] = np.isin(pieces, sorted(hit))
    return selected


def object_prompts(
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
) -> list[ObjectPrompt]:
    """Clicks and boxes of one slice -> one `ObjectPrompt` per object.

    Without boxes all clicks are one object. With boxes each box is one object and takes
    the clicks inside it (a click inside several boxes goes to the smallest). Clicks in no
    box make one more object when one of them is positive; when they are all negative they
    are given to every box (they say "not here", which is harmless to a box elsewhere).
    No clicks and no boxes: one object without user prompts (the text alone).

    Args:
        points: ``float [n, 2]`` (x, y); point_labels: ``[n]`` 1 / 0;
        boxes: ``float [m, 4]`` (x0, y0, x1, y1).
    """
    points = np.empty((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
    points = points.reshape(-1, 2)
    labels = np.ones(len(points), np.int64) if point_labels is None else np.asarray(point_labels)
    labels = labels.reshape(-1)
    if len(labels) != len(points):
        raise ValueError(f"{len(points)} points but {len(labels)} point labels.")
    boxes = np.empty((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64)
    boxes = boxes.reshape(-1, 4)
    if len(boxes) == 0:
        return [ObjectPrompt(points, labels)]
    inside = (
        (points[:, None, 0] >= boxes[None, :, 0])
        & (points[:, None, 0] <= boxes[None, :, 2])
        & (points[:, None, 1] >= boxes[None, :, 1])
        & (points[:, None, 1] <= boxes[None, :, 3])
    )  # [n, m]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    owner = np.where(inside, areas[None, :], np.inf).argmin(axis=1)
    in_a_box = inside.any(axis=1)
    loose = ~in_a_box
    shared = loose if loose.any() and not labels[loose].any() else np.zeros_like(loose)
    objects = []
    for index, box in enumerate(boxes):
        mine = (in_a_box & (owner == index)) | shared
        objects.append(ObjectPrompt(points[mine], labels[mine], box))
    if loose.any() and labels[loose].any():
        objects.append(ObjectPrompt(points[loose], labels[loose]))
    return objects


def rectangle_to_box(vertices_yx: np.ndarray) -> np.ndarray:
    """A rectangle's corners ``[4, 2]`` as (y, x) (a napari Shapes rectangle in data
    coordinates of the image plane) -> its box ``[4]`` (x0, y0, x1, y1)."""
    vertices = np.asarray(vertices_yx, dtype=np.float64).reshape(-1, 2)
    (y0, x0), (y1, x1) = vertices.min(axis=0), vertices.max(axis=0)
    return np.array([x0, y0, x1, y1])


class TextSegmenter(Protocol):
    """What `instances_from_text` needs of a predictor (`Predictor`)."""

    def segment(
        self,
        rgb: np.ndarray,
        class_names: Sequence[str],
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        threshold: float = 0.5,
    ) -> Prediction: ...


@dataclass
class InstancesFromText:
    """Every instance of one class on one slice."""

    labels: np.ndarray  # int32 [H, W]: 0 background, 1..n the instances
    count: int
    prediction: Prediction  # the class mask they were split from


def instances_from_text(
    predictor: TextSegmenter,
    rgb: np.ndarray,
    class_name: str,
    config: InstanceConfig | None = None,
    threshold: float = 0.5,
) -> InstancesFromText:
    """ "Segment all <class>": the text prompt's mask of one slice, split into instances.

    The mask is the class's probability above ``threshold`` (text only, no clicks); the
    split is `split_instances` (watershed by default). Each instance can then be corrected
    on its own: its mask is a starting prompt (`ObjectPrompt.mask`) for new clicks.
    """
    prediction = predictor.segment(rgb, [class_name], threshold=threshold)
    labels = split_instances(prediction.probabilities[0] > threshold, config)
    return InstancesFromText(labels, int(labels.max(initial=0)), prediction)
