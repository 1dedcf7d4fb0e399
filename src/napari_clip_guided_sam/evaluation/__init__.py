"""Evaluation: segmentation metrics (mIoU, IoU, Dice) and camouflaged-object metrics."""

from .metrics import (
    ConfusionAccumulator,
    MetricAccumulator,
    adaptive_e_measure,
    class_wise_miou,
    dice,
    e_measure,
    e_measure_curve,
    foreground_iou,
    mae,
    s_measure,
    weighted_f_measure,
)

__all__ = [
    "ConfusionAccumulator",
    "MetricAccumulator",
    "adaptive_e_measure",
    "class_wise_miou",
    "dice",
    "e_measure",
    "e_measure_curve",
    "foreground_iou",
    "mae",
    "s_measure",
    "weighted_f_measure",
]
