"""One training step's forward and loss: each example's class text, the decoder logits and
the segmentation loss against the ground truth at the logits' size. The engine calls it for
every batch (`engine._Run`), wrapped by DistributedDataParallel on several processes
(`training.distributed`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..model import prompts
from ..model.runtime import autocast
from .inputs import Batch, mask_to_logit_size
from .losses import segmentation_loss


def _batch_text_features(model, class_names: Sequence[str]) -> torch.Tensor:
    """Text features of each example's class, [B, D]: a class that several examples of the
    batch share is encoded once (the guide takes each class name once)."""
    distinct = list(dict.fromkeys(class_names))
    if len(distinct) == len(class_names):
        return model.text_features(class_names)
    features = model.text_features(distinct)
    return features[[distinct.index(name) for name in class_names]]


class StepForward(torch.nn.Module):
    """The forward of a training step: each example's class text features and the decoder
    logits [B, L, L]. The step calls it (wrapped by DistributedDataParallel on several
    processes, which sees every trained tensor the loss reaches, text path included)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, class_names, points, labels, generators) -> torch.Tensor:
        # Inside the step, with grad: the text positional embedding learns through the path
        # the model config names (`guide.text_gradient`).
        text = _batch_text_features(self.model, class_names)[:, None]  # [B, 1, D]
        output = self.model(
            images, text, point_coords=points, point_labels=labels, generator=generators
        )
        return output.low_res_logits[:, 0]  # the IoU head is not trained: not an output


def training_loss(
    forward: torch.nn.Module,
    batch: Batch,
    mode: str,
    generator: prompts.Generators,
    device: torch.device,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """Forward a batch and return the loss (scalar float32, with grad): the mean of the
    examples' losses. `forward`: the model, or the step's `StepForward` (wrapped by
    DistributedDataParallel on several processes).

    Text mode samples the prompt points from each similarity map with `generator` (one
    for the batch, or one per example; what the model will do at inference); manual mode
    draws them from the ground-truth masks.
    """
    step = getattr(forward, "module", forward)  # inside DistributedDataParallel
    if not isinstance(step, StepForward):
        forward = step = StepForward(forward)
    model = step.model
    images = batch.images.to(device)
    points, labels = None, None
    if mode == "manual":
        points, labels = prompts.sample_points_from_masks(
            batch.masks, model.config.guide.n_points, generator
        )
        points, labels = points.to(device), labels.to(device)
    with autocast(device, dtype):
        logits = forward(images, batch.class_names, points, labels, generator)
    size = model.config.sam.low_res_size
    target = mask_to_logit_size(batch.masks, size).to(device)
    valid = (
        None if batch.valid is None else (mask_to_logit_size(batch.valid, size) > 0.5).to(device)
    )
    return segmentation_loss(logits, target, model.config.loss, valid)
