"""Instance scores: how well predicted objects match the true ones, one to one.

Matching: a predicted and a true object match at threshold ``t`` when their IoU is strictly
above ``t``. For ``t >= 0.5`` such a match is unique (two objects that each overlap one
object by more than half of their union cannot both exist), so the pairs above ``t`` *are*
the one-to-one matching, the same one the Hungarian assignment on IoU finds (StarDist's
``matching``, micro-sam's mSA); no assignment problem has to be solved. Strict ``>`` is the
2018 Data Science Bowl's rule (Caicedo et al. 2019, Nat Methods); ``>=`` (StarDist) differs
only for a pair whose IoU equals ``t`` exactly, and at ``t = 0.5`` that is the one case where
``>=`` stops being unique.

At each threshold: TP, FP, FN, precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1,
accuracy ``TP / (TP + FP + FN)`` and panoptic quality ``sum of matched IoUs / (TP + FP/2 +
FN/2)`` (Kirillov et al. 2019). The DSB score of an image is its accuracy averaged over the
thresholds 0.5, 0.55, ..., 0.95; micro-sam calls the same number the mean segmentation
accuracy (mSA). A ratio whose denominator is 0 is 1.0 when the image has neither true nor
predicted objects (nothing to find, nothing found) and 0.0 otherwise.

Also: the adjusted Rand index of two labelings (e.g. over the true foreground, so background
does not dominate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "IOU_THRESHOLDS",
    "InstanceAccumulator",
    "InstanceScores",
    "MatchResult",
    "adjusted_rand_index",
    "iou_matrix",
    "match_instances",
    "score_instances",
    "true_objects",
]

# 0.5:0.05:0.95, the Data Science Bowl's and micro-sam's thresholds.
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# The threshold of the headline F1, precision, recall and panoptic quality.
HEADLINE_THRESHOLD = 0.5
_EIGHT = np.ones((3, 3), dtype=bool)


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every (predicted, true) object pair: ``float64 [n_pred, n_true]``.

    Args:
        pred, gt: ``int`` label images of equal shape, 0 background; each other value is
            one object (ids need not be consecutive).
    """
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
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or min(thresholds) < 0.5 or max(thresholds) >= 1.0:
        raise ValueError(
            f"IoU thresholds must lie in [0.5, 1) (matches are then unique), got {thresholds}"
        )
    return thresholds


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: bool) -> np.ndarray:
    """numerator / denominator; where it is 0: 1.0 for an empty image, else 0.0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    fill = np.full_like(numerator, 1.0 if empty else 0.0)
    return np.divide(numerator, denominator, out=fill, where=denominator > 0)


@dataclass(frozen=True)
class InstanceScores:
    """One-to-one matching at several IoU thresholds, for one image or pooled over several.

    Counts are arrays with one entry per threshold. Pooling (``a + b``) sums counts and
    matched IoUs, as a dataset-level table does; the DSB score of a pool is not the mean of
    its images' scores (see :class:`InstanceAccumulator` for that).
    """

    thresholds: tuple[float, ...]
    true_positives: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray
    matched_iou: np.ndarray  # sum of the IoUs of the matched pairs
    n_pred: int
    n_true: int

    @property
    def _empty(self) -> bool:
        return self.n_pred == 0 and self.n_true == 0

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.true_positives, self.true_positives + self.false_positives, self._empty)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.true_positives, self.true_positives + self.false_negatives, self._empty)

    @property
    def f1(self) -> np.ndarray:
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return _ratio(2 * tp, 2 * tp + fp + fn, self._empty)

    @property
    def accuracy(self) -> np.ndarray:
        """``TP / (TP + FP + FN)``: the Data Science Bowl's average precision per threshold."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return _ratio(tp, tp + fp + fn, self._empty)

    @property
    def panoptic_quality(self) -> np.ndarray:
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return _ratio(self.matched_iou, tp + (fp + fn) / 2, self._empty)

    @property
    def dsb_score(self) -> float:
        """Accuracy averaged over the thresholds (= micro-sam's mean segmentation accuracy)."""
        return float(self.accuracy.mean())

    def at(self, threshold: float) -> int:
        """Position of ``threshold`` in :attr:`thresholds`."""
        for position, value in enumerate(self.thresholds):
            if abs(value - threshold) < 1e-9:
                return position
        raise KeyError(f"threshold {threshold} not scored; scored: {self.thresholds}")

    def __add__(self, other: InstanceScores) -> InstanceScores:
        if self.thresholds != other.thresholds:
            raise ValueError("cannot pool scores made at different IoU thresholds")
        return InstanceScores(
            self.thresholds,
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
            self.matched_iou + other.matched_iou,
            self.n_pred + other.n_pred,
            self.n_true + other.n_true,
        )

    def headline(self) -> dict[str, float]:
        """DSB score / mSA and the scores at IoU 0.5: what papers print."""
        at = self.at(HEADLINE_THRESHOLD) if HEADLINE_THRESHOLD in self.thresholds else None
        result = {"dsb_score": self.dsb_score, "msa": self.dsb_score}
        if at is not None:
            result.update(
                {
                    "f1@0.5": float(self.f1[at]),
                    "precision@0.5": float(self.precision[at]),
                    "recall@0.5": float(self.recall[at]),
                    "pq@0.5": float(self.panoptic_quality[at]),
                }
            )
        return result

    def table(self) -> list[dict[str, float | int]]:
        """One row per threshold: tp, fp, fn, precision, recall, f1, accuracy, pq."""
        columns = {
            "tp": self.true_positives,
            "fp": self.false_positives,
            "fn": self.false_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "pq": self.panoptic_quality,
        }
        return [
            {"iou_threshold": t, **{k: _plain(v[i]) for k, v in columns.items()}}
            for i, t in enumerate(self.thresholds)
        ]

    def to_dict(self) -> dict:
        return {
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            **self.headline(),
            "per_threshold": self.table(),
        }


def _plain(value) -> float | int:
    return int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)


def score_instances(
    pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> InstanceScores:
    """Match predicted and true objects one to one at each IoU threshold (see the module).

    Args:
        pred, gt: ``int [H, W]`` (any equal shape) label images, 0 background.
        thresholds: IoU thresholds in [0.5, 1).
    """
    thresholds = _check_thresholds(thresholds)
    iou = iou_matrix(pred, gt)
    n_pred, n_true = iou.shape
    limits = np.asarray(thresholds)[:, None]
    # Above 0.5 every object has at most one partner: the matched pairs are the pairs above t.
    pair_iou = iou[iou > 0.5]
    matched = pair_iou[None, :] > limits
    tp = matched.sum(axis=1).astype(np.int64)
    matched_iou = (matched * pair_iou[None, :]).sum(axis=1)
    return InstanceScores(thresholds, tp, n_pred - tp, n_true - tp, matched_iou, n_pred, n_true)


@dataclass(frozen=True)
class MatchResult:
    """One-to-one matching of predicted and true instances at one IoU threshold."""

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
    """:func:`score_instances` at one threshold (``>= 0.5``), as counts."""
    scores = score_instances(pred, gt, (iou_threshold,))
    return MatchResult(
        int(scores.true_positives[0]),
        int(scores.false_positives[0]),
        int(scores.false_negatives[0]),
        iou_threshold,
    )


def true_objects(labels: np.ndarray, mask: np.ndarray, ids_are_objects: bool) -> np.ndarray:
    """The true objects of one class in a label image: ``int [H, W]``, 0 outside the class.

    Args:
        labels: the ground-truth label image.
        mask: ``bool``, the class's pixels (``ClassMap.mask``).
        ids_are_objects: each label value is one object (instance labels, ``--class``);
            otherwise label values name classes and each 8-connected region of the class
            is one object.
    """
    mask = np.asarray(mask, dtype=bool)
    if ids_are_objects:
        return np.where(mask, np.asarray(labels), 0).astype(np.int64, copy=False)
    objects, _ = ndi.label(mask, structure=_EIGHT)
    return objects


class InstanceAccumulator:
    """Instance scores over a dataset: per-image rows, summaries overall and per class.

    Dataset values: the DSB score (= mSA) is the mean over images of each image's score, as
    the Data Science Bowl and micro-sam average; the per-threshold table, F1, precision,
    recall and panoptic quality pool the counts of all images (StarDist's
    ``matching_dataset``). With several classes an image's overall row pools its classes
    (a predicted object only ever matches true objects of its own class).
    """

    def __init__(self, thresholds: Sequence[float] = IOU_THRESHOLDS):
        self.thresholds = _check_thresholds(thresholds)
        self._rows: list[tuple[str, str, InstanceScores]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def update(
        self, pred: np.ndarray, gt: np.ndarray, image: str, class_name: str
    ) -> InstanceScores:
        """Score one image's objects of one class; returns the image's scores."""
        scores = score_instances(pred, gt, self.thresholds)
        self._rows.append((image, class_name, scores))
        return scores

    def rows(self) -> list[dict]:
        """Per (image, class): counts, DSB score, F1@0.5 ... and the per-threshold table."""
        return [{"image": image, "class": name, **s.to_dict()} for image, name, s in self._rows]

    @staticmethod
    def _summary(per_image: Sequence[InstanceScores]) -> dict:
        pooled = per_image[0]
        for scores in per_image[1:]:
            pooled = pooled + scores
        summary = {
            "n_images": len(per_image),
            "n_true": pooled.n_true,
            "n_pred": pooled.n_pred,
            **pooled.headline(),
            "per_threshold": pooled.table(),
        }
        summary["dsb_score"] = summary["msa"] = float(np.mean([s.dsb_score for s in per_image]))
        return summary

    def summary(self) -> dict:
        """``overall`` and, with several classes, ``per_class`` summaries."""
        if not self._rows:
            raise ValueError("no images accumulated: call update() at least once")
        images: dict[str, InstanceScores] = {}
        classes: dict[str, list[InstanceScores]] = {}
        for image, name, scores in self._rows:
            images[image] = images[image] + scores if image in images else scores
            classes.setdefault(name, []).append(scores)
        result = {"overall": self._summary(list(images.values()))}
        if len(classes) > 1:
            result["per_class"] = {name: self._summary(s) for name, s in classes.items()}
        return result


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
