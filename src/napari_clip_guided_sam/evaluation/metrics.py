"""Segmentation metrics: IoU / Dice / class-wise mIoU and the camouflaged-object family.

Two families live here, both numpy + scipy only:

* **Binary and multi-class segmentation** on hard masks: :func:`foreground_iou`,
  :func:`dice` (per image) and :class:`ConfusionAccumulator` / :func:`class_wise_miou`
  (dataset level: intersection and union are summed per class over *all* pixels of all
  images, IoU is taken per class, then averaged over classes, as in segmentation papers).
  Label convention: ``0`` is background and ``1..K`` are the named classes, so
  ``num_classes = K + 1``. With ``include_background=True`` (default) the mean runs over
  background and every named class; for binary masks that is the CLIP-Guided SAM paper's
  mIoU over {background, foreground}.
* **Camouflaged / salient object metrics** on a predicted map in [0, 1] against a binary
  ground truth: :func:`mae`, :func:`s_measure`, :func:`e_measure` (plus
  :func:`e_measure_curve`, :func:`adaptive_e_measure`) and :func:`weighted_f_measure`.
  They reproduce the conventions of the community toolbox ``pysodmetrics`` (itself a port
  of the original MATLAB code), which is what camouflaged-object papers report.

Input conventions for the second family:

* ``pred`` is a 2-D float array with values in [0, 1]; ``gt`` is a 2-D bool array.
* With ``normalize=True`` (default) ``pred`` is min-max rescaled to [0, 1] whenever
  ``pred.max() != pred.min()``, as the toolbox does (MATLAB's ``mapminmax``). A constant
  map is used unchanged.
* The toolbox's own inputs are uint8 images; to evaluate those, convert with
  ``pred = pred_u8 / 255.0`` and ``gt = gt_u8 > 128``: the results are then identical to
  ``pysodmetrics``' ``step(pred_u8, gt_u8)``.

One deliberate deviation: the S-measure's region term splits the image at the ground-truth
centroid; when the centroid falls in the last row or column one quadrant is empty and the
toolbox (like the MATLAB original) returns NaN. Here an empty quadrant, whose weight is zero
anyway, contributes zero, so the score stays finite.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

# MATLAB's ``eps``; the toolbox adds it to denominators, and so must we to match it.
EPS = float(np.spacing(1))
# Probabilities strictly above this count as foreground ("above 0.5", logits > 0).
DEFAULT_THRESHOLD = 0.5
# Number of grey levels the E-measure curve sweeps (thresholds 0/255 .. 255/255).
N_LEVELS = 256

__all__ = [
    "DEFAULT_THRESHOLD",
    "ConfusionAccumulator",
    "MetricAccumulator",
    "adaptive_e_measure",
    "class_wise_miou",
    "dice",
    "e_measure",
    "e_measure_curve",
    "foreground_iou",
    "mae",
    "minmax_normalize",
    "s_measure",
    "weighted_f_measure",
]


# --------------------------------------------------------------------------- validation


def _check_pair(pred: np.ndarray, gt: np.ndarray, ndim: int | None = None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(
            f"shape mismatch: prediction has shape {pred.shape}, ground truth {gt.shape}"
        )
    if pred.size == 0:
        raise ValueError(f"empty input: prediction and ground truth have shape {pred.shape}")
    if ndim is not None and pred.ndim != ndim:
        raise ValueError(f"expected {ndim}-D arrays, got shape {pred.shape}")


def _as_mask(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != bool:
        raise TypeError(
            f"{name} must be a bool mask, got dtype {x.dtype}; threshold it first "
            "(e.g. `prob > 0.5`, `labels > 0`, or `mask_u8 > 128`)"
        )
    return x


def _as_prob_map(x, name: str = "pred") -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a float map in [0, 1], got dtype {x.dtype}; "
            "convert uint8 maps with `pred_u8 / 255.0`"
        )
    x = x.astype(np.float64, copy=False)
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{name} values must lie in [0, 1], got [{x.min()}, {x.max()}]")
    return x


def _as_labels(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        return x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(
            f"{name} must be a bool mask or an integer label image, got dtype {x.dtype}"
        )
    return x.astype(np.int64, copy=False)


def _prepare_map_and_gt(pred, gt, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_prob_map(pred)
    gt = _as_mask(gt, "gt")
    _check_pair(pred, gt, ndim=2)
    if normalize:
        pred = minmax_normalize(pred)
    return pred, gt


def minmax_normalize(pred: np.ndarray) -> np.ndarray:
    """Rescale ``pred`` to [0, 1] unless it is constant (then it is returned unchanged)."""
    low, high = pred.min(), pred.max()
    if high == low:
        return pred
    return (pred - low) / (high - low)


# ------------------------------------------------------------------ binary segmentation


def foreground_iou(pred, gt) -> float:
    """Intersection over union of two bool masks of any (equal) shape; 1.0 if both empty."""
    pred, gt = _as_mask(pred, "pred"), _as_mask(gt, "gt")
    _check_pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def dice(pred, gt) -> float:
    """Dice coefficient ``2|P&G| / (|P| + |G|)`` of two bool masks; 1.0 if both empty."""
    pred, gt = _as_mask(pred, "pred"), _as_mask(gt, "gt")
    _check_pair(pred, gt)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    if total == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred & gt) / total


class ConfusionAccumulator:
    """Dataset-level confusion matrix for class-wise IoU.

    Args:
        num_classes: classes including background (label 0); 2 for binary masks.
        ignore_index: a ground-truth label whose pixels are skipped (e.g. 255), or None.

    ``confusion[i, j]`` counts pixels of ground-truth class ``i`` predicted as class ``j``.
    """

    def __init__(self, num_classes: int = 2, ignore_index: int | None = None):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + 1), got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(self, pred, gt) -> None:
        """Add one image (or a stack): bool masks or integer label arrays of equal shape."""
        pred, gt = _as_labels(pred, "pred"), _as_labels(gt, "gt")
        _check_pair(pred, gt)
        if self.ignore_index is not None:
            keep = gt != self.ignore_index
            pred, gt = pred[keep], gt[keep]
        for name, labels in (("pred", pred), ("gt", gt)):
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"{name} labels must lie in [0, {self.num_classes - 1}], "
                    f"got [{labels.min()}, {labels.max()}]"
                )
        flat = gt.ravel() * self.num_classes + pred.ravel()
        counts = np.bincount(flat, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def intersection_and_union(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-class pixel counts ``(|P&G|, |P|G|)`` summed over everything seen."""
        intersection = np.diag(self.confusion)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - intersection
        return intersection, union

    def iou_per_class(self) -> np.ndarray:
        """IoU of each class, shape ``(num_classes,)``; NaN for a class never seen or predicted."""
        if self.confusion.sum() == 0:
            raise ValueError("no pixels accumulated: call update() with at least one image")
        intersection, union = self.intersection_and_union()
        iou = np.full(self.num_classes, np.nan)
        present = union > 0
        iou[present] = intersection[present] / union[present]
        return iou

    def miou(self, include_background: bool = True) -> float:
        """Mean IoU over classes (from 1 when ``include_background`` is False).

        Classes absent from both ground truth and prediction over the whole dataset are left
        out of the mean; NaN if no class remains.
        """
        iou = self.iou_per_class()
        if not include_background:
            iou = iou[1:]
        iou = iou[~np.isnan(iou)]
        return float(iou.mean()) if iou.size else float("nan")


def class_wise_miou(
    preds,
    gts,
    num_classes: int | None = None,
    include_background: bool = True,
    ignore_index: int | None = None,
) -> float:
    """Class-wise mIoU of a dataset.

    Args:
        preds, gts: one array pair, or equal-length iterables of arrays; bool masks or
            integer label images (0 = background).
        num_classes: classes including background; inferred when None (2 for bool masks,
            else the largest label seen + 1).
        include_background: average over background too (the paper's binary setting).
        ignore_index: ground-truth label to skip.
    """
    if isinstance(preds, np.ndarray) or isinstance(gts, np.ndarray):
        pairs = [(preds, gts)]
    else:
        preds, gts = list(preds), list(gts)
        if len(preds) != len(gts):
            raise ValueError(f"got {len(preds)} predictions but {len(gts)} ground truths")
        pairs = list(zip(preds, gts, strict=True))
    if not pairs:
        raise ValueError("empty input: no images given")
    if num_classes is None:
        num_classes = _infer_num_classes(pairs, ignore_index)
    accumulator = ConfusionAccumulator(num_classes, ignore_index=ignore_index)
    for pred, gt in pairs:
        accumulator.update(pred, gt)
    return accumulator.miou(include_background=include_background)


def _infer_num_classes(pairs: Iterable[tuple], ignore_index: int | None) -> int:
    largest = 1
    for pred, gt in pairs:
        for arr in (np.asarray(pred), np.asarray(gt)):
            if arr.size == 0 or arr.dtype == bool:
                continue
            if ignore_index is not None:
                arr = arr[arr != ignore_index]
            if arr.size:
                largest = max(largest, int(arr.max()))
    return largest + 1


# --------------------------------------------------------- camouflaged-object metrics


def mae(pred, gt, normalize: bool = True) -> float:
    """Mean absolute error between the map and the binary ground truth."""
    pred, gt = _prepare_map_and_gt(pred, gt, normalize)
    return _mae(pred, gt)


def _mae(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - gt)))


def s_measure(pred, gt, alpha: float = 0.5, normalize: bool = True) -> float:
    """Structure measure (Fan et al., ICCV 2017): ``alpha * object + (1 - alpha) * region``."""
    pred, gt = _prepare_map_and_gt(pred, gt, normalize)
    return _s_measure(pred, gt, alpha)


def _s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float) -> float:
    fg_fraction = gt.mean()
    # Degenerate ground truths: only the mean brightness of the map matters.
    if fg_fraction == 0:
        return float(1.0 - pred.mean())
    if fg_fraction == 1:
        return float(pred.mean())
    score = alpha * _object_similarity(pred, gt) + (1 - alpha) * _region_similarity(pred, gt)
    return float(max(0.0, score))


def _object_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    fg_fraction = gt.mean()
    fg = _object_score(pred[gt])
    bg = _object_score(1.0 - pred[~gt])
    return fg * fg_fraction + bg * (1 - fg_fraction)


def _object_score(values: np.ndarray) -> float:
    # Rewards a high, uniform response: the std is the unbiased one (MATLAB's ``std``).
    mean = values.mean()
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + spread + EPS)


def _region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    height, width = gt.shape
    rows, cols = np.nonzero(gt)
    # MATLAB's 1-based centroid becomes the exclusive split index here (round half to even,
    # like the toolbox).
    split_row = int(np.round(rows.mean())) + 1
    split_col = int(np.round(cols.mean())) + 1
    total = 0.0
    for row_slice in (slice(0, split_row), slice(split_row, height)):
        for col_slice in (slice(0, split_col), slice(split_col, width)):
            block_gt = gt[row_slice, col_slice]
            if block_gt.size == 0:  # zero weight; the toolbox would return NaN here
                continue
            weight = block_gt.size / (height * width)
            total += weight * _ssim(pred[row_slice, col_slice], block_gt)
    return total


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    # Single-window SSIM without stabilising constants, as in the S-measure paper.
    n = pred.size
    gt = gt.astype(np.float64)
    mean_p, mean_g = pred.mean(), gt.mean()
    dev_p, dev_g = pred - mean_p, gt - mean_g
    var_p = np.sum(dev_p**2) / (n - 1 + EPS)
    var_g = np.sum(dev_g**2) / (n - 1 + EPS)
    cov = np.sum(dev_p * dev_g) / (n - 1 + EPS)
    numerator = 4 * mean_p * mean_g * cov
    denominator = (mean_p**2 + mean_g**2) * (var_p + var_g)
    if numerator != 0:
        return numerator / (denominator + EPS)
    return 1.0 if denominator == 0 else 0.0


def e_measure_curve(pred, gt, normalize: bool = True) -> np.ndarray:
    """Enhanced-alignment measure (Fan et al., IJCAI 2018) at 256 thresholds.

    Returns:
        ``(256,)`` float64; entry ``t`` binarises the map at ``pred >= t / 255`` after
        quantising it to 8 bits (``floor(pred * 255)``), so it is ordered by increasing
        threshold (the toolbox's ``curve`` is the same array reversed).
    """
    pred, gt = _prepare_map_and_gt(pred, gt, normalize)
    return _e_measure_curve(pred, gt)


def _e_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    levels = (pred * 255).astype(np.uint8)
    fg_hist = np.bincount(levels[gt], minlength=N_LEVELS)
    all_hist = np.bincount(levels.ravel(), minlength=N_LEVELS)
    # Reverse cumulative sums: pixels at or above each level.
    true_pos = np.cumsum(fg_hist[::-1])[::-1]
    pred_pos = np.cumsum(all_hist[::-1])[::-1]
    return _enhanced_alignment(true_pos, pred_pos - true_pos, int(np.count_nonzero(gt)), gt.size)


def adaptive_e_measure(pred, gt, normalize: bool = True) -> float:
    """E-measure with the map binarised at ``min(2 * mean(pred), 1)``."""
    pred, gt = _prepare_map_and_gt(pred, gt, normalize)
    return _adaptive_e_measure(pred, gt)


def _adaptive_e_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    binary = pred >= min(2 * pred.mean(), 1.0)
    true_pos = np.count_nonzero(binary & gt)
    false_pos = np.count_nonzero(binary) - true_pos
    score = _enhanced_alignment(np.array([true_pos]), np.array([false_pos]), gt.sum(), gt.size)
    return float(score[0])


def e_measure(pred, gt, normalize: bool = True) -> float:
    """Mean E-measure: the average of :func:`e_measure_curve` over its 256 thresholds."""
    return float(e_measure_curve(pred, gt, normalize).mean())


def _enhanced_alignment(
    true_pos: np.ndarray, false_pos: np.ndarray, n_gt_fg: int, n_pixels: int
) -> np.ndarray:
    """E-measure for binary predictions given only their pixel counts (vectorised).

    Every pixel belongs to one of four (prediction, truth) cells; within a cell the
    enhanced alignment value is constant, so the map's sum is a weighted sum of four values.
    """
    true_pos = true_pos.astype(np.float64)
    false_pos = false_pos.astype(np.float64)
    pred_pos = true_pos + false_pos
    if n_gt_fg == 0:  # all-background truth: score the predicted background
        return (n_pixels - pred_pos) / (n_pixels - 1 + EPS)
    if n_gt_fg == n_pixels:  # all-foreground truth: score the predicted foreground
        return pred_pos / (n_pixels - 1 + EPS)
    pred_mean = pred_pos / n_pixels
    gt_mean = n_gt_fg / n_pixels
    # Cells in order: (fg, fg), (fg, bg), (bg, fg), (bg, bg) as (prediction, truth).
    cell_sizes = np.stack(
        [true_pos, false_pos, n_gt_fg - true_pos, n_pixels - pred_pos - (n_gt_fg - true_pos)]
    )
    pred_dev = np.stack([1 - pred_mean, 1 - pred_mean, -pred_mean, -pred_mean])
    gt_dev = np.array([1 - gt_mean, -gt_mean, 1 - gt_mean, -gt_mean])[:, None]
    alignment = 2 * pred_dev * gt_dev / (pred_dev**2 + gt_dev**2 + EPS)
    enhanced = (alignment + 1) ** 2 / 4
    return (enhanced * cell_sizes).sum(axis=0) / (n_pixels - 1 + EPS)


def weighted_f_measure(pred, gt, beta_sq: float = 1.0, normalize: bool = True) -> float:
    """Weighted F-measure (Margolin et al., CVPR 2014); 0.0 for an all-background truth."""
    pred, gt = _prepare_map_and_gt(pred, gt, normalize)
    return _weighted_f_measure(pred, gt, beta_sq)


def _weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta_sq: float) -> float:
    if not gt.any():
        return 0.0
    error = np.abs(pred - gt)
    # Distance from each background pixel to the nearest object pixel, and which pixel it is.
    distance, (near_row, near_col) = ndimage.distance_transform_edt(~gt, return_indices=True)
    # Pixel dependency: background errors are smoothed with the error at the nearest object
    # pixel so that edges are handled correctly.
    dependent_error = error[near_row, near_col]
    smoothed = ndimage.convolve(dependent_error, _gaussian_kernel(7, 5.0), mode="constant")
    error = np.where(gt & (smoothed < error), smoothed, error)
    # Pixel importance: background errors far from the object cost up to twice as much.
    importance = np.where(gt, 1.0, 2 - np.exp(np.log(0.5) / 5 * distance))
    weighted_error = error * importance
    fg_error = weighted_error[gt]
    true_pos = gt.sum() - fg_error.sum()
    false_pos = weighted_error[~gt].sum()
    recall = 1 - fg_error.mean()
    precision = true_pos / (true_pos + false_pos + EPS)
    return float((1 + beta_sq) * recall * precision / (recall + beta_sq * precision + EPS))


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised square Gaussian, MATLAB's ``fspecial('gaussian', size, sigma)``."""
    offsets = np.arange(size) - (size - 1) / 2
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = np.exp(-squared / (2 * sigma**2))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel / kernel.sum()


# ----------------------------------------------------------------- dataset aggregation


class MetricAccumulator:
    """Collects all metrics over a dataset of binary predictions, one image at a time.

    Args:
        threshold: foreground is ``pred_prob > threshold`` for mIoU, IoU and Dice.
        include_background: mIoU over {background, foreground} (True) or foreground only.
        normalize: min-max rescale each map before MAE / S / E / weighted F (the toolbox's
            convention); the IoU family always thresholds the raw probabilities.

    Dataset values follow the toolbox: per-image scores are averaged over images, except
    mIoU, which sums intersections and unions over the dataset first. ``e_measure_max`` is
    the maximum of the image-averaged curve.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        include_background: bool = True,
        normalize: bool = True,
    ):
        self.threshold = threshold
        self.include_background = include_background
        self.normalize = normalize
        self.reset()

    def reset(self) -> None:
        self._confusion = ConfusionAccumulator(num_classes=2)
        self._records: list[dict[str, float]] = []
        self._curve_sum = np.zeros(N_LEVELS)
        self._n_curves = 0

    def __len__(self) -> int:
        return len(self._records)

    def update(self, pred_prob, gt, valid=None) -> dict[str, float]:
        """Add one image: ``pred_prob`` HxW float in [0, 1], ``gt`` HxW bool, ``valid`` HxW
        bool pixels that count (None: all; unannotated pixels are left out).

        Returns the image's own scores (same keys as :meth:`summary`, without ``miou``,
        ``iou`` and ``e_measure_max``). The camouflaged-object scores judge whole maps, so
        an image with left-out pixels gets only ``fg_iou``, ``dice`` and ``mae``.
        """
        prob = _as_prob_map(pred_prob, "pred_prob")
        gt = _as_mask(gt, "gt")
        _check_pair(prob, gt, ndim=2)
        binary = prob > self.threshold
        sod_map = minmax_normalize(prob) if self.normalize else prob
        if valid is not None:
            valid = _as_mask(valid, "valid")
            _check_pair(valid, gt)
            if valid.all():
                valid = None
        if valid is not None:
            self._confusion.update(binary[valid], gt[valid])
            record = {
                "fg_iou": foreground_iou(binary[valid], gt[valid]) if valid.any() else 1.0,
                "dice": dice(binary[valid], gt[valid]) if valid.any() else 1.0,
                "mae": _mae(sod_map[valid], gt[valid]) if valid.any() else 0.0,
            }
            self._records.append(record)
            return dict(record)
        self._confusion.update(binary, gt)
        curve = _e_measure_curve(sod_map, gt)
        self._curve_sum += curve
        self._n_curves += 1
        record = {
            "fg_iou": foreground_iou(binary, gt),
            "dice": dice(binary, gt),
            "mae": _mae(sod_map, gt),
            "s_measure": _s_measure(sod_map, gt, alpha=0.5),
            "e_measure": float(curve.mean()),
            "e_measure_adaptive": _adaptive_e_measure(sod_map, gt),
            "weighted_f": _weighted_f_measure(sod_map, gt, beta_sq=1.0),
        }
        self._records.append(record)
        return dict(record)

    def summary(self) -> dict[str, float]:
        """Dataset scores: miou, iou (the foreground IoU of all pixels pooled), fg_iou, dice,
        mae, s_measure, e_measure, e_measure_max, e_measure_adaptive, weighted_f (a score
        is the mean over the images that have it)."""
        if not self._records:
            raise ValueError("no images accumulated: call update() at least once")
        result = {
            "miou": self._confusion.miou(include_background=self.include_background),
            "iou": float(self._confusion.iou_per_class()[1]),
        }
        for key in dict.fromkeys(k for record in self._records for k in record):
            result[key] = float(np.mean([r[key] for r in self._records if key in r]))
        if self._n_curves:
            result["e_measure_max"] = float((self._curve_sum / self._n_curves).max())
        result["e_measure_max"] = float((self._curve_sum / len(self._records)).max())
        return result
