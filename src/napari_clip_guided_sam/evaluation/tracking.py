"""Scores of objects followed through a stack: one object's masks per slice (propagation),
and the id switches of instances linked across slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IdSwitches", "count_id_switches", "slice_success"]


def slice_success(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5) -> float:
    """Fraction of an object's slices segmented right: IoU >= ``iou_threshold``.

    Args:
        pred, gt: ``bool [Z, H, W]`` the predicted and the true masks of one object.

    The slices counted are those where the object is, or where a mask was predicted (a mask
    on a slice without the object is a failure); 1.0 when neither has any pixel.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(
            f"Expected two [Z, H, W] masks of one shape, got {pred.shape}, {gt.shape}."
        )
    inter = (pred & gt).sum(axis=(1, 2))
    union = (pred | gt).sum(axis=(1, 2))
    counted = union > 0
    if not counted.any():
        return 1.0
    return float((inter[counted] / union[counted] >= iou_threshold).mean())


@dataclass(frozen=True)
class IdSwitches:
    """How often a true object's matched prediction changes id along the stack."""

    objects: int  # true objects (ids of the true labels)
    switches: int  # changes of the matched predicted id between matched slices
    matched: int  # (object, slice) pairs with a prediction matched at IoU > the threshold
    present: int  # (object, slice) pairs where the true object is present

    @property
    def per_100_objects(self) -> float:
        return 100.0 * self.switches / self.objects if self.objects else 0.0

    @property
    def coverage(self) -> float:
        """Share of the true objects' slices with a matched prediction."""
        return self.matched / self.present if self.present else 1.0


def count_id_switches(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5) -> IdSwitches:
    """Id switches of predicted instances against true 3D-consistent instances.

    On every slice, predicted and true instances are matched one to one where IoU >
    ``iou_threshold`` (>= 0.5 makes matches unique). Along each true object, each change of
    its matched predicted id from the one at its previous matched slice is a switch (the
    tracking error of MOT benchmarks); slices without a match neither count nor reset.

    Args:
        pred, gt: ``int [Z, H, W]`` instance labels, 0 background; ``gt`` ids are the same
            object on every slice.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"Expected two [Z, H, W] label stacks, got {pred.shape}, {gt.shape}.")
    if iou_threshold < 0.5:
        raise ValueError(f"iou_threshold must be >= 0.5 (unique matches), got {iou_threshold}.")
    last: dict[int, int] = {}
    switches = matched = present = 0
    for pred_slice, gt_slice in zip(pred, gt, strict=True):
        pred_ids, gt_ids, iou = _iou_table(pred_slice, gt_slice)
        present += len(gt_ids)
        for p, g in zip(*np.nonzero(iou > iou_threshold), strict=True):
            true_id, pred_id = int(gt_ids[g]), int(pred_ids[p])
            matched += 1
            if true_id in last and last[true_id] != pred_id:
                switches += 1
            last[true_id] = pred_id
    objects = len(np.setdiff1d(np.unique(gt), [0]))
    return IdSwitches(objects, switches, matched, present)


def _iou_table(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero ids of both label images and the IoU of every pair ``[n_pred, n_gt]``."""
    pred_values, pred_index = np.unique(pred, return_inverse=True)
    gt_values, gt_index = np.unique(gt, return_inverse=True)
    joint = np.bincount(
        pred_index.ravel() * len(gt_values) + gt_index.ravel(),
        minlength=len(pred_values) * len(gt_values),
    ).reshape(len(pred_values), len(gt_values))
    keep_pred, keep_gt = pred_values != 0, gt_values != 0
    inter = joint[keep_pred][:, keep_gt].astype(np.float64)
    union = joint.sum(axis=1)[keep_pred][:, None] + joint.sum(axis=0)[keep_gt][None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return pred_values[keep_pred], gt_values[keep_gt], iou
