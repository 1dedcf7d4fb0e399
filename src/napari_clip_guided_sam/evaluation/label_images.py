"""Scoring label images written earlier (e.g. by `clip-guided-sam segment`) against the
ground truth, without a model: pixel scores per class and instance scores.

A prediction file holds what `segment` writes: class label values (a class's pixels are the
values the class map gives it) or, with one class, object ids (every nonzero value is the
class, each value one object). Objects: with ``split`` each class's predicted pixels are
split into objects (`inference.instances.split_instances` with the chosen method); without
it, a single class's ids are its objects and the classes of a class map are cut into
8-connected regions. True objects follow `evaluation.instances.true_objects`. Unannotated
pixels (the class map's ignore value) count for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import numpy as np

from ..data.class_map import ClassMap
from ..data.reader import read_image
from .instances import InstanceAccumulator, true_objects
from .metrics import MetricAccumulator
from .scoring import EvaluationProgress, summarise

__all__ = ["iter_label_image_scores"]


def _planes(path: Path) -> np.ndarray:
    """A label file as ``[n, H, W]`` integer planes (singleton axes dropped)."""
    array = np.asarray(read_image(path).array)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{path.name} holds {array.dtype} values; expected integer labels")
    array = np.squeeze(array) if array.ndim > 2 else array
    if array.ndim < 2:
        raise ValueError(f"{path.name} is not an image (shape {array.shape})")
    return array.reshape(-1, *array.shape[-2:])


def iter_label_image_scores(
    pairs: Sequence[tuple[Path, Path]],
    class_map: ClassMap,
    split: Callable[[np.ndarray], np.ndarray] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> Generator[EvaluationProgress, None, dict]:
    """Score (ground truth, prediction) label files.

    Yields one EvaluationProgress per file and returns the metrics of
    `scoring.iter_evaluation` (pixel scores overall and per class, ``rows`` per slice and
    class) with ``"instances"`` (`InstanceAccumulator.summary()` and its ``rows``). Pairs
    that cannot be compared (unreadable, different shapes) are appended to `skipped` as
    ``(file name, reason)``.

    Raises:
        ValueError: no pair could be scored.
    """
    overall = MetricAccumulator()
    per_class: dict[str, MetricAccumulator] = {}
    objects = InstanceAccumulator()
    rows: list[dict] = []
    for done, (truth_path, pred_path) in enumerate(pairs, start=1):
        try:
            truths, preds = _planes(truth_path), _planes(pred_path)
            if truths.shape != preds.shape:
                raise ValueError(
                    f"prediction {pred_path.name} has shape {preds.shape[1:]} x "
                    f"{preds.shape[0]} but the labels {truths.shape[1:]} x {truths.shape[0]}"
                )
            class_map.check_values(np.unique(truths), truth_path.name)
        except ValueError as error:
            if skipped is None:
                raise
            skipped.append((truth_path.name, str(error)))
            continue
        for plane, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
            source = truth_path.name if len(truths) == 1 else f"{truth_path.name} slice {plane}"
            valid = class_map.valid(truth)
            for name in class_map.class_names:
                true_mask = class_map.mask(truth, name)
                pred_mask = class_map.mask(pred, name)
                if valid is not None:
                    pred_mask &= valid
                score = pred_mask.astype(np.float64)
                record = overall.update(score, true_mask, valid)
                per_class.setdefault(name, MetricAccumulator()).update(score, true_mask, valid)
                rows.append({"image": source, "class": name, **record})
                if split is not None:
                    predicted = split(pred_mask)
                else:
                    predicted = true_objects(pred, pred_mask, class_map.is_single_class)
                expected = true_objects(truth, true_mask, class_map.is_single_class)
                objects.update(predicted, expected, source, name)
        yield EvaluationProgress(done, len(pairs), truth_path.name)
    if not len(overall):
        raise ValueError("no prediction could be compared with its labels (see the skipped files)")
    metrics = summarise(overall, per_class)
    metrics["rows"] = rows
    metrics["instances"] = {**objects.summary(), "rows": objects.rows()}
    return metrics
