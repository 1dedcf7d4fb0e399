"""Segmentation losses on the decoder's low-resolution logits (docs/architecture.md, "Training").

The paper's best loss is BCE + soft Dice + soft IoU on the logits (Table 9); the released
code trains with BCE only (`ModelConfig.loss = "bce"`, the `reference` preset).

`valid` (same shape, bool) leaves pixels out: unannotated pixels (a class map's ignore value)
add nothing to any term and get no gradient. BCE is then the mean over each mask's valid
pixels; Dice and IoU sum overlap and areas over them. Every term is a mean over the masks,
so a batch's loss is the mean of its examples' losses: the gradient of a batch of 2B equals
the average of two batches of B (training on several processes relies on it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_KINDS = ("bce_dice_iou", "bce")
_SMOOTH = 1.0  # keeps Dice and IoU defined (and their gradients finite) on empty masks


def _flat(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets as [P, H*W] float32, one row per mask ([..., H, W] in);
    both zero outside `valid`."""
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape."
        )
    if valid is not None and valid.shape != logits.shape:
        raise ValueError(
            f"valid {tuple(valid.shape)} and logits {tuple(logits.shape)} differ in shape."
        )
    if logits.dim() < 2:
        raise ValueError(f"Expected masks of shape [..., H, W], got {tuple(logits.shape)}.")
    rows = logits.shape[-2] * logits.shape[-1]
    probs, target = torch.sigmoid(logits.float()), target.float()
    if valid is not None:
        probs, target = probs * valid, target * valid
    return probs.reshape(-1, rows), target.reshape(-1, rows)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - soft Dice per mask, averaged: logits [..., H, W], target {0, 1} alike -> []."""
    probs, target = _flat(logits, target, valid)
    overlap = (probs * target).sum(1)
    total = probs.sum(1) + target.sum(1)
    return (1 - (2 * overlap + _SMOOTH) / (total + _SMOOTH)).mean()


def soft_iou_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - soft IoU (Jaccard) per mask, averaged: logits [..., H, W], target alike -> []."""
    probs, target = _flat(logits, target, valid)
    overlap = (probs * target).sum(1)
    union = probs.sum(1) + target.sum(1) - overlap
    return (1 - (overlap + _SMOOTH) / (union + _SMOOTH)).mean()


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy on logits (numerically stable form): the mean over each mask's
    valid pixels, averaged over the masks (every mask weighs the same, as in Dice and IoU)."""
    _flat(logits, target, valid)
    if valid is None:  # every mask has the same number of pixels: the mean of all of them
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    weight = valid.float()
    per_pixel = F.binary_cross_entropy_with_logits(
        logits.float(), target.float(), weight=weight, reduction="none"
    )
    rows = logits.shape[-2] * logits.shape[-1]
    per_mask = per_pixel.reshape(-1, rows).sum(1) / weight.reshape(-1, rows).sum(1).clamp(min=1.0)
    return per_mask.mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str = "bce_dice_iou",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of `kind` for P masks.

    logits: [P, L, L] (or [B, K, L, L]) decoder logits; target: same shape, {0, 1} or bool
    (the ground truth resized to L with nearest); valid: bool alike, the pixels that count
    (None: all). Returns a scalar (float32).
    """
    if kind == "bce":
        return bce_loss(logits, target, valid)
    if kind == "bce_dice_iou":
        return (
            bce_loss(logits, target, valid)
            + soft_dice_loss(logits, target, valid)
            + soft_iou_loss(logits, target, valid)
        )
    raise ValueError(f"Unknown loss {kind!r}; choose one of: {', '.join(LOSS_KINDS)}.")
