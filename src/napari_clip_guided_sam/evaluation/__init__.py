"""Evaluation: segmentation metrics (mIoU, IoU, Dice), camouflaged-object metrics, instance
scores (``instances``) and scoring a model on labelled data (``scoring``, imports torch)."""

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
