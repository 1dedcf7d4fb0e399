"""Parameter accounting of the composed model (paper Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
from torch import nn

from .clip_guided_sam import CLIPGuidedSAM
from .config import ModelConfig
from .factory import build_model


@dataclass(frozen=True)
class ParameterRow:
    component: str
    total: int
    trainable: int


def _count(parameters) -> tuple[int, int]:
    parameters = list(parameters)
    return (
        sum(p.numel() for p in parameters),
        sum(p.numel() for p in parameters if p.requires_grad),
    )


def _row(name: str, *modules: nn.Module | None) -> ParameterRow:
    parameters = [p for m in modules if m is not None for p in m.parameters()]
    return ParameterRow(name, *_count(parameters))


def _text_tower_parameters(clip: open_clip.CLIP) -> list[nn.Parameter]:
    visual = {id(p) for p in clip.visual.parameters()}
    return [p for p in clip.parameters() if id(p) not in visual]


def parameter_table(model: CLIPGuidedSAM) -> list[ParameterRow]:
    """Total and trainable parameters per component, plus system and deployment totals."""
    sam, clip = model.sam, model.guide.clip
    encoder = _row("SAM image encoder + adapters", sam.image_encoder, model.adapters)
    adapters = _row("  of which adapters", model.adapters)
    decoder = _row(
        "SAM decoder (prompt encoder + mask decoder)", sam.prompt_encoder, sam.mask_decoder
    )
    sam_total = _row("SAM total", sam, model.adapters)
    vision = _row("CLIP vision", clip.visual)
    text = ParameterRow("CLIP text (+ logit scale)", *_count(_text_tower_parameters(clip)))
    clip_total = _row("CLIP total", clip)
    system = ParameterRow(
        "System (SAM + CLIP)",
        sam_total.total + clip_total.total,
        sam_total.trainable + clip_total.trainable,
    )
    deployment = ParameterRow(
        "Deployment (SAM + CLIP vision, cached text)",
        sam_total.total + vision.total,
        sam_total.trainable + vision.trainable,
    )
    return [encoder, adapters, decoder, sam_total, vision, text, clip_total, system, deployment]


def count_parameters(config: ModelConfig | str) -> list[ParameterRow]:
    """Parameter table of a config's real architecture, built on the meta device."""
    with torch.device("meta"):
        model = build_model(config, base_weights="random")
    return parameter_table(model)


@dataclass(frozen=True)
class AdapterDepthRow:
    """Adapters in the last `blocks` encoder blocks: their parameters and the system's
    trainable total."""

    blocks: int
    adapters: int
    trainable: int


def adapter_depth_table(config: ModelConfig) -> list[AdapterDepthRow]:
    """Trainable parameters for adapters in the last N encoder blocks, N = 1 .. depth (the
    rest of `config`, CLIP's trainable blocks included, as it is)."""
    if not config.adapters.enabled:
        return []
    with torch.device("meta"):
        model = build_model(config.replace(**{"adapters.blocks": None}), base_weights="random")
    assert model.adapters is not None  # adapters are enabled
    per_block = [sum(p.numel() for p in block.parameters()) for block in model.adapters]
    others = sum(p.numel() for p in model.parameters() if p.requires_grad) - sum(per_block)
    return [
        AdapterDepthRow(n, sum(per_block[-n:]), others + sum(per_block[-n:]))
        for n in range(1, len(per_block) + 1)
    ]


def format_depth_table(rows: list[AdapterDepthRow], chosen: int | None = None) -> str:
    """`adapter_depth_table` as text; `chosen` marks the config's own choice."""
    lines = [f"{'last N blocks adapted':<22} {'adapters':>9}  {'trainable':>9}"]
    for row in rows:
        mark = "  <- this config" if row.blocks == chosen else ""
        lines.append(
            f"{row.blocks:<22} {row.adapters / 1e6:>8.2f}M  {row.trainable / 1e6:>8.1f}M{mark}"
        )
    return "\n".join(lines)


def format_table(rows: list[ParameterRow]) -> str:
    width = max(len(r.component) for r in rows)
    lines = [f"{'component':<{width}}  {'total':>9}  {'trainable':>9}"]
    for row in rows:
        lines.append(
            f"{row.component:<{width}}  {row.total / 1e6:>8.1f}M  {row.trainable / 1e6:>8.1f}M"
        )
    return "\n".join(lines)
