"""Scoring a model: run it with the inference settings and measure its masks at the original
size. Training validates with it after every epoch; `clip-guided-sam evaluate` runs it on
held-out images.

Text-only mode samples prompt points from the similarity map with the inference seed
(`guide.point_seed`), manual mode takes ground-truth points from a generator with that same
fixed seed, so a score repeats exactly for the same weights.

Each class is scored on its own mask (the class's probability above the threshold against
the class's true pixels; unannotated pixels left out). With several classes, ``iou/<class>``
is a class's IoU with all pixels of the data pooled, and ``miou`` the mean of those over the
classes that appear (in the truth or the prediction); with one class ``miou`` stays the
paper's mean over {background, class}.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..model import prompts
from ..model.preprocess import InputFrame
from ..model.runtime import autocast
from ..model.threads import work_unit
from .instances import InstanceAccumulator
from .metrics import MetricAccumulator
from .modes import check_mode

__all__ = [
    "EvaluationProgress",
    "InstanceScoring",
    "PreparedData",
    "evaluate_model",
    "iter_evaluation",
]


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
class InstanceScoring:
    """How to score objects as well as pixels.

    Attributes:
        split: a class's predicted mask (bool [H, W]) -> its objects (int [H, W]), e.g.
            `inference.instances.split_instances` with the chosen method.
        truth: example index -> the true objects of its class (int [H, W], see
            `evaluation.instances.true_objects`).
    """

    split: Callable[[np.ndarray], np.ndarray]
    truth: Callable[[int], np.ndarray]


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
    instances: InstanceScoring | None = None,
    rows: bool = False,
) -> Generator[EvaluationProgress, None, dict]:
    """Score `model` on prepared examples.

    Yields one EvaluationProgress per example and returns the metrics: every key of
    `MetricAccumulator.summary()` (``miou``, ``iou``, ``fg_iou``, ``dice``…) over all
    examples, ``n_samples``, and with several classes also ``"<key>/<class>"`` per class
    (``miou`` is then the mean class IoU, see the module). With `instances`, also
    ``"instances"``: `InstanceAccumulator.summary()` plus its per-image ``rows``; with
    `rows`, ``"rows"``: each example's own scores. The model is left in eval mode.
    """
    check_mode(mode)
    if len(data) == 0:
        raise ValueError("No validation samples to evaluate.")
    model.eval()
    device = model.device
    overall = MetricAccumulator(threshold=threshold)
    per_class: dict[str, MetricAccumulator] = {}
    objects = InstanceAccumulator() if instances is not None else None
    records: list[dict] = []
    text_cache: dict[str, torch.Tensor] = {}
    seed = model.config.guide.point_seed
    for index in range(len(data)):
        sample = data[index]
        with torch.no_grad(), autocast(device, dtype), work_unit(device):
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
        truth, valid = _truth(data, index)
        record = overall.update(probability, truth, valid)
        if rows:
            records.append({"image": sample.source, "class": sample.class_name, **record})
        per_class.setdefault(sample.class_name, MetricAccumulator(threshold=threshold)).update(
            probability, truth, valid
        )
        if instances is not None and objects is not None:
            predicted = probability > threshold
            if valid is not None:
                predicted &= valid
            objects.update(
                instances.split(predicted), instances.truth(index), sample.source, sample.class_name
            )
        yield EvaluationProgress(index + 1, len(data), sample.source)
    metrics = summarise(overall, per_class)
    if rows:
        metrics["rows"] = records
    if objects is not None:
        metrics["instances"] = {**objects.summary(), "rows": objects.rows()}
    return metrics


def _truth(data: PreparedData, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The ground truth and the pixels that count (None: all) at the original size."""
    original_truth = getattr(data, "original_truth", None)
    if original_truth is not None:
        return original_truth(index)
    return data.original_mask(index), None


def summarise(overall: MetricAccumulator, per_class: dict[str, MetricAccumulator]) -> dict:
    """The metrics dict of `iter_evaluation` from its accumulators (see there)."""
    metrics: dict = {key: _finite(value) for key, value in overall.summary().items()}
    metrics["n_samples"] = len(overall)
    if len(per_class) > 1:
        for name, accumulator in per_class.items():
            for key, value in accumulator.summary().items():
                metrics[f"{key}/{name}"] = _finite(value)
        class_iou = [metrics[f"iou/{name}"] for name in per_class]
        present = [value for value in class_iou if value is not None]
        metrics["miou"] = float(np.mean(present)) if present else None
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
