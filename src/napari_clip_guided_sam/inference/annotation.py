"""Committed objects of a label array: commit, undo, remove, and each object's class.

The object workflow of an annotation tool: the current mask (from text, clicks, a box) is a
preview; committing writes it into the committed label array as an object with its own id
and class, and Undo reverts the last change exactly. "Segment all <class>" commits every
instance at once (`commit_instances`), as one change. A 3D object (propagated through a
stack) is one commit of several slices under one id. No napari here: a GUI passes its Labels
layer's array and writes through the layer (``write=layer.data_setitem``), so napari's own
undo history records every commit as well.

Overlaps: by default a new object only fills pixels that are background (or its own, when
an object is committed again), so committed objects are never eaten by a later one, as in
micro-sam; ``overlap="overwrite"`` lets the new object take every pixel of its mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..data.class_map import ClassMap

__all__ = [
    "OVERLAP_RULES",
    "Change",
    "LabelEdit",
    "ObjectAnnotations",
]

OverlapRule = Literal["keep", "overwrite"]
OVERLAP_RULES: tuple[str, ...] = ("keep", "overwrite")
Writer = Callable[[tuple[np.ndarray, ...], np.ndarray], None]
SliceIndex = tuple[int, ...]


@dataclass(frozen=True)
class LabelEdit:
    """Pixels of a label array that a change rewrote: where, what was there, what is now.

    ``indices`` has one integer array per axis of the label array (numpy's fancy
    indexing, as napari's ``Labels.data_setitem`` takes it).
    """

    indices: tuple[np.ndarray, ...]
    before: np.ndarray
    after: np.ndarray

    @property
    def size(self) -> int:
        """Number of pixels changed."""
        return int(self.before.size)

    def inverse(self) -> LabelEdit:
        """The edit that restores the pixels as they were."""
        return LabelEdit(self.indices, self.after, self.before)

    def slices(self) -> list[SliceIndex]:
        """Leading indices (all axes but the last two) of the slices touched, sorted."""
        if self.size == 0:
            return []
        lead = np.stack(self.indices[:-2], axis=1) if len(self.indices) > 2 else None
        if lead is None:
            return [()]
        return [tuple(int(i) for i in row) for row in np.unique(lead, axis=0)]


@dataclass(frozen=True)
class Change:
    """One commit, removal or undo: the objects' classes before and after, the pixels.

    A class of None means "no such object" (before: a new object; after: removed).
    """

    classes_before: dict[int, str | None]
    classes_after: dict[int, str | None]
    edit: LabelEdit

    @property
    def object_ids(self) -> list[int]:
        """The objects changed, ascending."""
        return sorted(self.classes_after)

    def inverse(self) -> Change:
        return Change(self.classes_after, self.classes_before, self.edit.inverse())


class ObjectAnnotations:
    """The committed objects of one label array (2D, or a stack ``[..., Y, X]``).

    Args:
        labels: the committed label array (e.g. a napari Labels layer's data); read to
            compute every change, written only through ``write``.
        classes: ``{object id: class name}`` of objects already in ``labels``.
        overlap: ``"keep"`` (default): a new object fills only background pixels (and its
            own); ``"overwrite"``: it takes every pixel of its mask.
        write: ``write(indices, values)`` puts values into ``labels`` (default: numpy
            assignment; a napari GUI passes ``layer.data_setitem`` to keep its history).
        max_undo: changes kept for undo (the oldest are forgotten).
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes: Mapping[int, str] | None = None,
        *,
        overlap: OverlapRule = "keep",
        write: Writer | None = None,
        max_undo: int = 100,
    ):
        if labels.ndim < 2 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"Committed labels must be an integer array [..., Y, X], got {labels.dtype} "
                f"of shape {labels.shape}."
            )
        self.labels = labels
        self.classes: dict[int, str] = {int(k): str(v) for k, v in (classes or {}).items()}
        self.overlap = _check_overlap(overlap)
        self._write = write or self._assign
        self.max_undo = int(max_undo)
        self._undo: list[Change] = []

    # ------------------------------------------------------------------ queries
    def next_id(self) -> int:
        """The id a new object gets: one above every id in the array and the table."""
        largest = max([int(self.labels.max(initial=0)), *self.classes])
        if largest + 1 > np.iinfo(self.labels.dtype).max:
            raise ValueError(
                f"The committed labels ({self.labels.dtype}) cannot hold another object id; "
                "use a layer of a larger integer type (e.g. uint32)."
            )
        return largest + 1

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def class_map(self) -> ClassMap:
        """The classes of the committed objects as a class map (for training, export)."""
        if not self.classes:
            raise ValueError("No committed objects yet: commit at least one object.")
        return ClassMap(dict(sorted(self.classes.items())))

    def features(self) -> dict[str, list]:
        """Columns ``index`` and ``class`` of every committed id (0 = background), for a
        Labels layer's features table."""
        ids = sorted(self.classes)
        return {"index": [0, *ids], "class": ["background", *(self.classes[i] for i in ids)]}

    # ------------------------------------------------------------------ changes
    def commit(
        self,
        class_name: str,
        masks: Mapping[SliceIndex, np.ndarray],
        *,
        object_id: int | None = None,
        overlap: OverlapRule | None = None,
    ) -> Change:
        """Write an object's masks (per slice) under one id, with its class.

        Args:
            class_name: the object's class.
            masks: ``{leading index: bool [Y, X]}``; ``{(): mask}`` for a 2D array,
                ``{(z,): mask, ...}`` for a stack (several slices: one 3D object).
            object_id: None for a new object (`next_id`); an existing id commits that
                object again: on the given slices its old pixels are replaced by the new
                mask (other slices keep theirs), and its class becomes ``class_name``.
            overlap: this commit's rule (default: the annotations' ``overlap``).

        Raises:
            ValueError: no mask, a mask of the wrong shape, an empty mask, or a mask lying
                wholly under other objects with the ``"keep"`` rule.
        """
        name = _clean_class(class_name)
        if not masks:
            raise ValueError("Nothing to commit: no mask.")
        object_id = self.next_id() if object_id is None else int(object_id)
        if not 0 < object_id <= np.iinfo(self.labels.dtype).max:
            raise ValueError(
                f"Object ids are 1..{np.iinfo(self.labels.dtype).max}, got {object_id}."
            )
        values = {index: np.asarray(mask).astype(bool) * object_id for index, mask in masks.items()}
        if not any(v.any() for v in values.values()):
            raise ValueError("Nothing to commit: the mask is empty.")
        return self._commit(values, {object_id: name}, overlap)

    def commit_instances(
        self,
        class_name: str,
        instances: Mapping[SliceIndex, np.ndarray],
        *,
        overlap: OverlapRule | None = None,
    ) -> Change:
        """Write every instance of an instance image (per slice) as a new object of
        ``class_name``, in one change (one undo).

        Args:
            instances: ``{leading index: int [Y, X]}``, 0 background; a value found on
                several slices is one object (e.g. instances linked through a stack).

        Instances lying wholly under committed objects (``"keep"`` rule) are left out.
        """
        name = _clean_class(class_name)
        if not instances:
            raise ValueError("Nothing to commit: no instances.")
        found = np.unique(np.concatenate([np.unique(v) for v in instances.values()]))
        found = found[found != 0]
        if found.size == 0:
            raise ValueError("Nothing to commit: no instance.")
        first = self.next_id()
        if first + found.size - 1 > np.iinfo(self.labels.dtype).max:
            raise ValueError(
                f"The committed labels ({self.labels.dtype}) cannot hold {found.size} more "
                "objects; use a layer of a larger integer type (e.g. uint32)."
            )
        new_ids = np.arange(first, first + found.size, dtype=np.int64)
        values = {}
        for index, image in instances.items():
            image = np.asarray(image)
            values[index] = np.where(image != 0, new_ids[np.searchsorted(found, image)], 0)
        return self._commit(values, {int(i): name for i in new_ids}, overlap)

    def remove(self, object_id: int) -> Change:
        """Delete an object from every slice (undoable)."""
        object_id = int(object_id)
        where = np.nonzero(self.labels == object_id)
        if object_id not in self.classes and where[0].size == 0:
            raise ValueError(f"No object with id {object_id}.")
        before = self.labels[where]
        edit = LabelEdit(where, before, np.zeros_like(before))
        change = Change({object_id: self.classes.get(object_id)}, {object_id: None}, edit)
        self._apply(change)
        return change

    def undo(self) -> Change | None:
        """Revert the last commit or removal: its pixels as they were, the class table as
        it was. Returns the change that was made (to mirror it elsewhere), or None when
        there is nothing to undo."""
        if not self._undo:
            return None
        reverse = self._undo.pop().inverse()
        self._write_change(reverse)
        return reverse

    # ------------------------------------------------------------------ internals
    def _commit(
        self,
        values: Mapping[SliceIndex, np.ndarray],
        classes: dict[int, str],
        overlap: OverlapRule | None,
    ) -> Change:
        """Write ``values`` (per slice: the object id of each pixel, 0 none) for the
        objects of ``classes``: their old pixels on those slices are replaced."""
        rule = _check_overlap(overlap or self.overlap)
        owned = np.array(sorted(classes))
        parts = [self._slice_edit(index, ids, owned, rule) for index, ids in values.items()]
        kept = set().union(*(taken for _, taken in parts)) & set(classes)
        if not kept:
            raise ValueError(
                "The object lies wholly under committed objects; commit it with the "
                "'overwrite' rule to take their pixels."
            )
        edit = _concatenate([part for part, _ in parts], self.labels.ndim)
        after: dict[int, str | None] = {i: classes[i] for i in sorted(kept)}
        change = Change({i: self.classes.get(i) for i in after}, after, edit)
        self._apply(change)
        return change

    def _slice_edit(
        self, index: SliceIndex, ids: np.ndarray, owned: np.ndarray, rule: OverlapRule
    ) -> tuple[LabelEdit, set[int]]:
        """The edit of one slice, and the objects that keep pixels there.

        ids: the object id of each pixel (0: not in this change); owned: the objects whose
        old pixels on this slice the change replaces.
        """
        index = tuple(int(i) for i in index)
        lead = self.labels.shape[:-2]
        if len(index) != len(lead) or any(not 0 <= i < n for i, n in zip(index, lead, strict=True)):
            raise ValueError(f"Slice index {index} does not address a slice of shape {lead}.")
        if ids.shape != self.labels.shape[-2:]:
            raise ValueError(
                f"A mask of shape {ids.shape} does not fit slices of {self.labels.shape[-2:]}."
            )
        current = np.asarray(self.labels[index])
        mine = np.isin(current, owned)
        wanted = ids != 0
        takes = wanted if rule == "overwrite" else wanted & ((current == 0) | mine)
        target = np.where(takes, ids, np.where(mine, 0, current)).astype(current.dtype)
        rows, cols = np.nonzero(target != current)
        indices = tuple(np.full(rows.size, i, dtype=np.intp) for i in index) + (rows, cols)
        edit = LabelEdit(indices, current[rows, cols], target[rows, cols])
        return edit, {int(i) for i in np.unique(ids[takes])}

    def _apply(self, change: Change) -> None:
        self._write_change(change)
        self._undo.append(change)
        del self._undo[: max(0, len(self._undo) - self.max_undo)]

    def _write_change(self, change: Change) -> None:
        if change.edit.size:
            self._write(change.edit.indices, change.edit.after)
        for object_id, name in change.classes_after.items():
            if name is None:
                self.classes.pop(object_id, None)
            else:
                self.classes[object_id] = name

    def _assign(self, indices: tuple[np.ndarray, ...], values: np.ndarray) -> None:
        self.labels[indices] = values


def _clean_class(class_name: str) -> str:
    name = " ".join(str(class_name).split())
    if not name:
        raise ValueError("An object needs a class name.")
    return name


def _check_overlap(rule: str) -> OverlapRule:
    if rule not in OVERLAP_RULES:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAP_RULES)}, got {rule!r}")
    return rule  # type: ignore[return-value]


def _concatenate(parts: list[LabelEdit], ndim: int) -> LabelEdit:
    indices = tuple(np.concatenate([p.indices[axis] for p in parts]) for axis in range(ndim))
    before = np.concatenate([p.before for p in parts])
    after = np.concatenate([p.after for p in parts])
    return LabelEdit(indices, before, after)
