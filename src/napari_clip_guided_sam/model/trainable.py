"""Which parameters training updates and their optimiser groups (docs/architecture.md,
"Training")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from .clip_guided_sam import CLIPGuidedSAM


def _clip_attention_names(model: CLIPGuidedSAM) -> list[str]:
    blocks = model.guide.clip.visual.transformer.resblocks
    count = min(model.config.trainable.clip_attention_blocks, len(blocks))
    names = []
    for index in range(len(blocks) - count, len(blocks)):
        prefix = f"guide.clip.visual.transformer.resblocks.{index}.attn."
        names += [
            prefix + leaf
            for leaf in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        ]
    return names


def trainable_parameter_names(model: CLIPGuidedSAM) -> list[str]:
    """Names of the parameters training changes, from the model's `TrainableConfig`.

    CLIP: visual attention (in_proj, out_proj) of the last N blocks and, optionally, the
    text positional embedding. SAM: prompt encoder, mask decoder, all adapters. The SAM
    backbone, CLIP's MLPs and the rest of the text tower stay frozen.
    """
    config = model.config.trainable
    names = set(_clip_attention_names(model))
    if config.text_positional_embedding:
        names.add("guide.clip.positional_embedding")
    selected_prefixes = [
        prefix
        for prefix, wanted in (
            ("sam.prompt_encoder.", config.prompt_encoder),
            ("sam.mask_decoder.", config.mask_decoder),
            ("adapters.", config.adapters),
        )
        if wanted
    ]
    for name, _ in model.named_parameters():
        if name.startswith(tuple(selected_prefixes)):
            names.add(name)
    return [name for name, _ in model.named_parameters() if name in names]


def is_clip_parameter(name: str) -> bool:
    return name.startswith("guide.clip.")


def configure_trainable(model: CLIPGuidedSAM) -> list[str]:
    """Freeze everything, then unfreeze the trainable set; returns its names."""
    names = set(trainable_parameter_names(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    return sorted(names)


def parameter_groups(
    model: CLIPGuidedSAM, lr: float, clip_lr: float, weight_decay: float, clip_weight_decay: float
) -> list[dict]:
    """AdamW groups: CLIP's trainable tensors at (`clip_lr`, `clip_weight_decay`), the rest
    at (`lr`, `weight_decay`)."""
    clip: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (clip if is_clip_parameter(name) else rest).append(parameter)
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "sam_and_adapters"}]
    if clip:
        groups.append(
            {"params": clip, "lr": clip_lr, "weight_decay": clip_weight_decay, "name": "clip"}
        )
    return groups
