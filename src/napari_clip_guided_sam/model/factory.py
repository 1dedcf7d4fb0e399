"""One factory that builds a CLIP-Guided SAM model from a config and base weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from .attention import use_fused_attention
from .clip_guided_sam import CLIPGuidedSAM
from .config import ModelConfig, get_preset
from .guide import SemanticGuide, build_clip, resize_positional_embedding
from .sam import build_sam
from .trainable import configure_trainable
from .weights import CLIP_WEIGHTS, SAM_WEIGHTS, load_clip_weights, load_sam_weights

BaseWeights = Literal["official", "random"]


def has_official_weights(config: ModelConfig) -> bool:
    return config.sam.variant in SAM_WEIGHTS and config.clip.arch in CLIP_WEIGHTS


def default_base_weights(config: ModelConfig) -> BaseWeights:
    return "official" if has_official_weights(config) else "random"


def rebuild_arguments(base_weights_tag: str) -> dict:
    """`build_model` arguments that rebuild the base a model recorded as `base_weights`:
    "official" -> {} (the official files), "random:<seed>" -> the same seeded init."""
    kind, _, seed = base_weights_tag.partition(":")
    return {"base_weights": "random", "seed": int(seed)} if kind == "random" else {}


def build_model(
    config: ModelConfig | str = "paper",
    *,
    base_weights: BaseWeights | None = None,
    sam_checkpoint: str | Path | None = None,
    clip_checkpoint: str | Path | None = None,
    seed: int = 0,
) -> CLIPGuidedSAM:
    """Build SAM and CLIP, load their base weights strictly, then attach the adapters.

    base_weights: "official" loads the official files (from the cache, downloading them
    when possible, or from `sam_checkpoint` / `clip_checkpoint`); "random" keeps a seeded
    random initialisation (the `tiny` preset, tests, parameter counting). The global RNG
    state is left untouched. Build under `torch.device("meta")` to count parameters only.
    Attention runs fused (`model.attention.use_fused_attention(model, False)` switches it off).
    """
    if isinstance(config, str):
        config = get_preset(config)
    if base_weights is None:
        base_weights = default_base_weights(config)
    if base_weights not in ("official", "random"):
        raise ValueError(f"base_weights must be 'official' or 'random', got {base_weights!r}.")
    if base_weights == "official" and not has_official_weights(config):
        raise ValueError(
            f"Preset {config.name!r} has no official weights; use base_weights='random'."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(config.sam)
        clip = build_clip(config.clip)
        # Adapters are initialised from the same seeded stream, after the base modules.
        if base_weights == "official":
            load_sam_weights(sam, config.sam.variant, sam_checkpoint)
            load_clip_weights(clip, config.clip.arch, clip_checkpoint)
        resize_positional_embedding(clip.visual, config.clip.clip_size)
        model = CLIPGuidedSAM(config, sam, SemanticGuide(clip, config.clip, config.guide))
    configure_trainable(model)
    use_fused_attention(model)
    model.base_weights = base_weights if base_weights == "official" else f"random:{seed}"
    return model.eval()
