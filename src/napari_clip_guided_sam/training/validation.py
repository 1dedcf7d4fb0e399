"""Validation: run a model with the inference settings and score it at the original size.

Text-only mode samples prompt points from the similarity map with the inference seed
(`guide.point_seed`), manual mode takes ground-truth points from a generator with that same
fixed seed, so a score repeats exactly for the same weights.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..evaluation.metrics import MetricAccumulator
from ..model import prompts
from ..model.runtime import autocast
from .inputs import PreparedCache

MODES = ("text", "manual")


@dataclass(frozen=True)
class EvaluationProgress:
    """One image scored: `done` of `total`."""

    done: int
    total: int
    source: str


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown prompt mode {mode!r}; use 'text' (text only) or 'manual'.")


def iter_evaluation(
    model,
    data: Sequence | PreparedCache,
    mode: str = "text",
    *,
    dtype: torch.dtype | None = None,
    threshold: float = 0.5,
) -> Generator[EvaluationProgress, None, dict]:
    """Score `model` on samples (`data.datasets.Sample` items or a PreparedCache).

    Yields one EvaluationProgress per sample and returns the metrics: every key of
    `MetricAccumulator.summary()` (``miou`` over {background, foreground}, ``fg_iou``,
    ``dice``…) over all samples, ``n_samples``, and with several classes also
    ``"<key>/<class>"`` per class. The model is left in eval mode.
    """
    check_mode(mode)
    if not isinstance(data, PreparedCache):
        data = PreparedCache(data, model.config, max_bytes=0)
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


def _finite(value: float) -> float | None:
    """NaN (e.g. mIoU with no class present) becomes None, which JSON can hold."""
    return None if value is None or np.isnan(value) else float(value)


def evaluate_model(model, data, mode: str = "text", **kwargs) -> dict:
    """`iter_evaluation` run to the end: the metrics dict."""
    steps = iter_evaluation(model, data, mode, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
