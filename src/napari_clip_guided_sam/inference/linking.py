"""Linking per-slice instances into objects that keep one id through a stack.

Instances are split slice by slice (`inference.instances`), so their ids are numbered per
slice. Linking renumbers them: each instance takes the id of the instance of the previous
slice it overlaps best, matched one to one (Hungarian assignment on IoU, a pair counts from
``min_iou``; instances of different classes never match); an unmatched instance starts a new
id. Ids are unique over everything one linker has seen. Links run along the innermost
leading axis (Z of a ZYX or TZYX stack, T of a TYX movie); `SliceLinker.restart` begins a
new chain, e.g. at the first slice of every time point.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["DEFAULT_LINK_IOU", "SliceLinker", "link_stack"]

DEFAULT_LINK_IOU = 0.25  # IoU from which an instance continues one of the previous slice


class SliceLinker:
    """Renumbers the instance images of consecutive slices so objects keep their id.

    Feed slices in order with `link`; each call returns the slice with linked ids.
    """

    def __init__(self, min_iou: float = DEFAULT_LINK_IOU):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"The linking IoU must be in (0, 1], got {min_iou}.")
        self.min_iou = float(min_iou)
        self.next_id = 1
        self._previous: np.ndarray | None = None  # linked ids of the previous slice
        self._classes: dict[int, int] = {}  # linked id -> class value

    def restart(self) -> None:
        """The next slice starts a new chain (nothing links to the slice before it)."""
        self._previous = None

    def link(self, instances: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Linked ids of one slice.

        Args:
            instances: ``int [H, W]`` instance ids of this slice (0 background).
            classes: optional ``int [H, W]`` class labels of the same slice; an instance's
                class is its most frequent class value, and only instances of one class link.

        Returns:
            ``uint32 [H, W]``: 0 background, linked ids elsewhere.
        """
        instances = np.asarray(instances)
        if instances.ndim != 2:
            raise ValueError(f"link takes one slice [H, W], got shape {instances.shape}.")
        ids, inverse = np.unique(instances, return_inverse=True)
        inverse = inverse.reshape(instances.shape)
        objects = ids != 0
        object_class = _majority(inverse, classes, len(ids))
        new_ids = np.zeros(len(ids), dtype=np.int64)
        matches = self._match(inverse, objects, object_class)
        for index in np.flatnonzero(objects):
            if index in matches:
                new_ids[index] = matches[index]
            else:
                new_ids[index] = self.next_id
                self.next_id += 1
            self._classes[int(new_ids[index])] = int(object_class[index])
        linked = new_ids[inverse].astype(np.uint32)
        self._previous = linked
        return linked

    def _match(
        self, inverse: np.ndarray, objects: np.ndarray, object_class: np.ndarray
    ) -> dict[int, int]:
        """{index of a current instance: linked id of the previous slice it continues}."""
        count = len(objects)
        if self._previous is None:
            return {}
        if self._previous.shape != inverse.shape:
            raise ValueError(
                f"Slices differ in shape: {self._previous.shape} then {inverse.shape}."
            )
        before, before_inverse = np.unique(self._previous, return_inverse=True)
        joint = np.bincount(
            inverse.ravel() * len(before) + before_inverse.ravel(), minlength=count * len(before)
        ).reshape(count, len(before))
        area_now, area_before = joint.sum(axis=1), joint.sum(axis=0)
        union = area_now[:, None] + area_before[None, :] - joint
        iou = np.divide(joint, union, out=np.zeros(joint.shape), where=union > 0)
        iou[:, before == 0] = 0.0
        iou[~objects, :] = 0.0
        before_class = np.array([self._classes.get(int(i), -1) for i in before])
        iou[object_class[:, None] != before_class[None, :]] = 0.0
        rows, cols = linear_sum_assignment(iou, maximize=True)
        keep = iou[rows, cols] >= self.min_iou
        return {int(r): int(before[c]) for r, c in zip(rows[keep], cols[keep], strict=True)}


def _majority(inverse: np.ndarray, classes: np.ndarray | None, count: int) -> np.ndarray:
    """The most frequent class value of each instance (all 1 without class labels)."""
    if classes is None:
        return np.ones(count, dtype=np.int64)
    classes = np.asarray(classes)
    if classes.shape != inverse.shape:
        raise ValueError(f"Class labels {classes.shape} do not match instances {inverse.shape}.")
    values, class_inverse = np.unique(classes, return_inverse=True)
    joint = np.bincount(
        inverse.ravel() * len(values) + class_inverse.ravel(), minlength=count * len(values)
    ).reshape(count, len(values))
    return values[joint.argmax(axis=1)].astype(np.int64)


def link_stack(
    instances: np.ndarray,
    classes: np.ndarray | None = None,
    min_iou: float = DEFAULT_LINK_IOU,
) -> np.ndarray:
    """Link a whole stack ``[..., Z, H, W]`` of per-slice instances along its innermost
    leading axis (a new chain for every index of the outer axes).

    Returns ``uint32`` labels of the same shape, ids unique over the stack.
    """
    instances = np.asarray(instances)
    if instances.ndim < 3:
        raise ValueError(f"link_stack takes a stack [..., Z, H, W], got shape {instances.shape}.")
    if classes is not None and np.shape(classes) != instances.shape:
        raise ValueError(f"Class labels {np.shape(classes)} do not match {instances.shape}.")
    linker = SliceLinker(min_iou)
    out = np.zeros(instances.shape, dtype=np.uint32)
    for index in np.ndindex(*instances.shape[:-2]):
        if index[-1] == 0:
            linker.restart()
        out[index] = linker.link(instances[index], None if classes is None else classes[index])
    return out
