"""Prompts from the user's frame (original pixels, class names) to the model's: checked,
with clear errors for bad input, then converted to SAM-frame tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..model.guide import validate_class_names
from ..model.preprocess import InputFrame
from .objects import ObjectPrompt


def clean_names(class_names: Sequence[str]) -> list[str]:
    """Validated, stripped class names (no duplicates, none reserved)."""
    validate_class_names(class_names)
    return [name.strip() for name in class_names]


def clicks_to_frame(
    points: np.ndarray | None, point_labels: np.ndarray | None, frame: InputFrame
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """User clicks in original (x, y) pixels -> SAM-frame coords [n, 2] and labels [n]."""
    if points is None:
        return None
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return None
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2) as (x, y), got {points.shape}.")
    if point_labels is None:
        raise ValueError("point_labels are required with points (1 positive, 0 negative).")
    point_labels = np.asarray(point_labels).reshape(-1)
    if point_labels.shape[0] != points.shape[0]:
        raise ValueError(f"{points.shape[0]} points but {point_labels.shape[0]} point labels.")
    if not np.isin(point_labels, (0, 1)).all():
        raise ValueError("Point labels must be 1 (positive) or 0 (negative).")
    coords = frame.points_to_input(points)
    return torch.from_numpy(coords).float(), torch.from_numpy(point_labels.astype(np.int64))


@dataclass
class ObjectTensors:
    """One object's prompts in the SAM frame (CPU tensors)."""

    points: tuple[torch.Tensor, torch.Tensor] | None  # coords [n, 2], labels [n]
    box: torch.Tensor | None  # [4]
    mask: torch.Tensor | None  # float [S, S]


def object_tensors(prompt: ObjectPrompt, frame: InputFrame) -> ObjectTensors:
    """An object's prompts in original pixels -> the SAM frame (checked: clear errors)."""
    points = clicks_to_frame(prompt.points, prompt.point_labels, frame)
    box = None
    if prompt.box is not None:
        box = torch.from_numpy(frame.boxes_to_input(prompt.box[None])[0]).float()
    mask = None if prompt.mask is None else frame.mask_to_input(prompt.mask)
    return ObjectTensors(points, box, mask)
