"""What a `Predictor` returns: the masks of K classes (`Prediction`) or of N objects
(`ObjectPrediction`), the label image rule they share with tiled and batch runs, how often
each stage ran, and the out-of-memory error with its advice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.class_map import LabelTable


class InferenceMemoryError(RuntimeError):
    """The device ran out of memory; the message says what to change."""


@dataclass
class Prediction:
    """Masks of K classes for one image of size H x W (all in the original frame)."""

    labels: np.ndarray  # int32 [H, W]: label_table's value of each pixel's class
    probabilities: np.ndarray  # float32 [K, H, W] mask probabilities
    similarity_maps: np.ndarray  # float32 [K, H, W] CLIP similarity maps in [0, 1]
    class_names: list[str]
    iou_predictions: np.ndarray  # float32 [K] SAM's predicted IoU per class
    # Label value of each class and of unlabelled pixels (default: k + 1 for class_names[k],
    # 0 unlabelled; see Predictor.label_table_for).
    label_table: LabelTable | None = None

    def __post_init__(self) -> None:
        if self.label_table is None:
            self.label_table = LabelTable.positional(self.class_names)


@dataclass
class ObjectPrediction:
    """Masks of N objects of one class on one image of size H x W (original frame)."""

    masks: np.ndarray  # bool [N, H, W]: probability above the mask threshold
    probabilities: np.ndarray  # float32 [N, H, W]
    iou_predictions: np.ndarray  # float32 [N] SAM's predicted IoU per object
    class_name: str


@dataclass
class PredictorStats:
    """How often each stage ran: tests and benchmarks check what a call recomputed."""

    clip_calls: int = 0  # CLIP visual-tower runs (one per new image)
    text_calls: int = 0  # class names sent through the text tower
    encoder_calls: int = 0  # image x class pairs through SAM's (adapted) image encoder
    decoder_calls: int = 0  # masks from the prompt encoder + mask decoder
    embedding_hits: int = 0  # image x class pairs served from the embedding cache
    disk_hits: int = 0  # CLIP tokens and image x class embeddings read from the disk store

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)


def labels_from_probabilities(
    probabilities: torch.Tensor, threshold: float, values: torch.Tensor, unlabelled: int
) -> torch.Tensor:
    """[K, H, W] probabilities -> int32 [H, W]: the label value (`values[k]`) of the most
    probable class where it is above `threshold`, else `unlabelled`."""
    if probabilities.shape[0] == 1:
        return torch.where(probabilities[0] > threshold, values[0], unlabelled)
    best, index = probabilities.max(dim=0)
    return torch.where(best > threshold, values[index], unlabelled)


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text
