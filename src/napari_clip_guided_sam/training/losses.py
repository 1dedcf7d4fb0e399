"""Segmentation losses on the decoder's low-resolution logits (docs/architecture.md, "Training").

The paper's best loss is BCE + soft Dice + soft IoU on the logits (Table 9); the released
code trains with BCE only (`ModelConfig.loss = "bce"`, the `reference` preset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_KINDS = ("bce_dice_iou", "bce")
_SMOOTH = 1.0  # keeps Dice and IoU defined (and their gradients finite) on empty masks


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets as [P, H*W] float32, one row per mask ([..., H, W] in)."""
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape."
        )
    if logits.dim() < 2:
        raise ValueError(f"Expected masks of shape [..., H, W], got {tuple(logits.shape)}.")
    rows = logits.shape[-2] * logits.shape[-1]
    return torch.sigmoid(logits.float()).reshape(-1, rows), target.float().reshape(-1, rows)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per mask, averaged: logits [..., H, W], target {0, 1} alike -> []."""
    probs, target = _flat(logits, target)
    overlap = (probs * target).sum(1)
    total = probs.sum(1) + target.sum(1)
    return (1 - (2 * overlap + _SMOOTH) / (total + _SMOOTH)).mean()


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU (Jaccard) per mask, averaged: logits [..., H, W], target alike -> []."""
    probs, target = _flat(logits, target)
    overlap = (probs * target).sum(1)
    union = probs.sum(1) + target.sum(1) - overlap
    return (1 - (overlap + _SMOOTH) / (union + _SMOOTH)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits (numerically stable form)."""
    _flat(logits, target)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "bce_dice_iou"
) -> torch.Tensor:
    """The training loss of `kind` for P masks.

    logits: [P, L, L] (or [B, K, L, L]) decoder logits; target: same shape, {0, 1} or bool
    (the ground truth resized to L with nearest). Returns a scalar (float32).
    """
    if kind == "bce":
        return bce_loss(logits, target)
    if kind == "bce_dice_iou":
        return (
            bce_loss(logits, target)
            + soft_dice_loss(logits, target)
            + soft_iou_loss(logits, target)
        )
    raise ValueError(f"Unknown loss {kind!r}; choose one of: {', '.join(LOSS_KINDS)}.")
