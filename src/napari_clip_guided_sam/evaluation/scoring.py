"""Scoring a model: run it with the inference settings and measure its masks at the original
size. Training validates with it after every epoch; `clip-guided-sam evaluate` runs it on
held-out images.

Text-only mode samples prompt points from the similarity map with the inference seed
(`guide.point_seed`), manual mode takes ground-truth points from a generator with that same
fixed seed, so a score repeats exactly for the same weights.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..model import prompts
from ..model.preprocess import InputFrame
from ..model.runtime import autocast
from .metrics import MetricAccumulator
from .modes import check_mode

__all__ = ["EvaluationProgress", "PreparedData", "evaluate_model", "iter_evaluation"]


class PreparedItem(Protocol):
    """One (image, class) example in the SAM input frame."""

    image: torch.Tensor  # [3, S, S] SAM-normalised
    mask: torch.Tensor  # [S, S] bool ground truth in the SAM frame
    frame: InputFrame
    class_name: str
    source: str


class PreparedData(Protocol):
    """Examples in the SAM frame with their ground truth at the original size (e.g. a
    `training.inputs.PreparedCache`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PreparedItem: ...

    def original_mask(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class EvaluationProgress:
    """One image scored: `done` of `total`."""

    done: int
    total: int
    source: str


def iter_evaluation(
    model,
    data: PreparedData,
    mode: str = "text",
    *,
    dtype: torch.dtype | None = None,
    threshold: float = 0.5,
) -> Generator[EvaluationProgress, None, dict]:
    """Score `model` on prepared examples.

    Yields one EvaluationProgress per example and returns the metrics: every key of
    `MetricAccumulator.summary()` (``miou`` over {background, foreground}, ``fg_iou``,
    ``dice``…) over all examples, ``n_samples``, and with several classes also
    ``"<key>/<class>"`` per class. The model is left in eval mode.
    """
    check_mode(mode)
    if len(data) == 0:
        raise ValueError("No validation samples to evaluate.")
    model.eval()
    device = model.device
    overall = MetricAccumulator(threshold=threshold)
    per_class: dict[str, MetricAccumulator] = {}
    text_cache: dict[str, torch.Tensor] = {}
    seed = model.config.guide.point_seed
    for index in range(len(data)):
        sample = data[index]
        with torch.no_grad(), autocast(device, dtype):
            if sample.class_name not in text_cache:
                text_cache[sample.class_name] = model.text_features([sample.class_name])
            points, labels = None, None
            if mode == "manual":
                ground_truth_points = torch.Generator().manual_seed(seed)
                points, labels = prompts.sample_points_from_masks(
                    sample.mask[None], model.config.guide.n_points, ground_truth_points
                )
                points, labels = points.to(device), labels.to(device)
            output = model(
                sample.image[None].to(device),
                text_cache[sample.class_name],
                point_coords=points,
                point_labels=labels,
                generator=torch.Generator().manual_seed(seed),
            )
        logits = sample.frame.logits_to_original(output.low_res_logits[0, 0].float())
        probability = torch.sigmoid(logits).cpu().numpy()
        truth = data.original_mask(index)
        overall.update(probability, truth)
        per_class.setdefault(sample.class_name, MetricAccumulator(threshold=threshold)).update(
            probability, truth
        )
        yield EvaluationProgress(index + 1, len(data), sample.source)
    return _summarise(overall, per_class)


def _summarise(overall: MetricAccumulator, per_class: dict[str, MetricAccumulator]) -> dict:
    metrics: dict = {key: _finite(value) for key, value in overall.summary().items()}
    metrics["n_samples"] = len(overall)
    if len(per_class) > 1:
        for name, accumulator in per_class.items():
            for key, value in accumulator.summary().items():
                metrics[f"{key}/{name}"] = _finite(value)
    return metrics


def _finite(value: float | None) -> float | None:
    """NaN (e.g. mIoU with no class present) becomes None, which JSON can hold."""
    return None if value is None or np.isnan(value) else float(value)


def evaluate_model(model, data: PreparedData, mode: str = "text", **kwargs) -> dict:
    """`iter_evaluation` run to the end: the metrics dict."""
    steps = iter_evaluation(model, data, mode, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
