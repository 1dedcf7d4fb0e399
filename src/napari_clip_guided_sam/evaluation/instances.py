"""Instance scores: how well predicted objects match the true ones, one to one.

The Data Science Bowl's average precision at an IoU threshold, and the adjusted Rand index
of two labelings (e.g. over the true foreground, so background does not dominate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MatchResult", "adjusted_rand_index", "match_instances"]


@dataclass(frozen=True)
class MatchResult:
    """One-to-one matching of predicted and true instances at an IoU threshold."""

    true_positives: int
    false_positives: int
    false_negatives: int
    iou_threshold: float

    @property
    def average_precision(self) -> float:
        """The 2018 Data Science Bowl score at one threshold: TP / (TP + FP + FN)."""
        total = self.true_positives + self.false_positives + self.false_negatives
        return self.true_positives / total if total else 1.0


def match_instances(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5) -> MatchResult:
    """Match instance images one to one where IoU > ``iou_threshold`` (>= 0.5 is unique).

    Args:
        pred: ``int [H, W]`` predicted instances, 0 background.
        gt: ``int [H, W]`` true instances, 0 background.
    """
    if iou_threshold < 0.5:
        raise ValueError(
            f"iou_threshold must be >= 0.5 (matches are then unique), got {iou_threshold}"
        )
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    pred_values, pred_ids = np.unique(pred, return_inverse=True)
    gt_values, gt_ids = np.unique(gt, return_inverse=True)
    joint = np.bincount(
        pred_ids.ravel() * len(gt_values) + gt_ids.ravel(),
        minlength=len(pred_values) * len(gt_values),
    ).reshape(len(pred_values), len(gt_values))
    keep_pred, keep_gt = pred_values != 0, gt_values != 0
    inter = joint[keep_pred][:, keep_gt].astype(np.float64)
    area_pred = joint.sum(axis=1)[keep_pred][:, None]
    area_gt = joint.sum(axis=0)[keep_gt][None, :]
    union = area_pred + area_gt - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matched = iou > iou_threshold
    tp = int(matched.sum())
    return MatchResult(tp, int(keep_pred.sum()) - tp, int(keep_gt.sum()) - tp, iou_threshold)


def adjusted_rand_index(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Adjusted Rand index of two labelings (1 identical, ~0 chance level).

    Args:
        pred, gt: ``int`` label images of the same shape.
        mask: optional ``bool`` selection of the pixels compared (e.g. the true foreground,
            so background does not dominate the score).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    if mask is not None:
        pred, gt = pred[np.asarray(mask, bool)], gt[np.asarray(mask, bool)]
    pred, gt = pred.ravel(), gt.ravel()
    n = pred.size
    if n < 2:
        return 1.0
    _, pred_ids = np.unique(pred, return_inverse=True)
    _, gt_ids = np.unique(gt, return_inverse=True)
    joint = np.bincount(pred_ids * (gt_ids.max() + 1) + gt_ids).astype(np.float64)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index = pairs(joint)
    a = pairs(np.bincount(pred_ids).astype(np.float64))
    b = pairs(np.bincount(gt_ids).astype(np.float64))
    expected = a * b / (n * (n - 1) / 2)
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)
