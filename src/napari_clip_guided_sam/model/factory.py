"""One factory that builds a CLIP-Guided SAM model from a config and base weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from .attention import use_fused_attention
from .base_weights import ROLES, BaseSource, BaseWeights, identify, official_file
from .clip_guided_sam import CLIPGuidedSAM
from .config import ModelConfig, get_preset
from .guide import SemanticGuide, build_clip, resize_positional_embedding
from .sam import build_sam, resize_input
from .trainable import configure_trainable
from .weights import CLIP_WEIGHTS, SAM_WEIGHTS, load_clip_weights, load_sam_weights, official_paths

BaseWeightsKind = Literal["official", "random"]


def has_official_weights(config: ModelConfig) -> bool:
    return config.sam.variant in SAM_WEIGHTS and config.clip.arch in CLIP_WEIGHTS


def default_base_weights(config: ModelConfig) -> BaseWeightsKind:
    return "official" if has_official_weights(config) else "random"


def build_model(
    config: ModelConfig | str = "paper",
    *,
    base_weights: BaseWeightsKind | None = None,
    sam_weights: str | Path | None = None,
    clip_weights: str | Path | None = None,
    seed: int = 0,
) -> CLIPGuidedSAM:
    """Build SAM and CLIP, load their base weights strictly, then attach the adapters.

    sam_weights / clip_weights: a file to load instead of the official one: the user's own
    base (e.g. a SAM ViT-B fine-tuned for microscopy, in SAM's state-dict layout), recorded
    by name and sha256 (or as official when its sha256 is the official file's).
    base_weights: what the other backbones get: "official" loads the official files (checked
    against their sha256, downloaded when possible; all missing files are reported at once),
    "random" keeps a seeded random initialisation (`tiny`, tests, parameter counting).
    The global RNG state is left untouched. Build under `torch.device("meta")` to count
    parameters only. The model starts zero-shot (`CLIPGuidedSAM.fine_tuned` is False).
    Attention runs fused (`model.attention.use_fused_attention(model, False)` switches it off).
    """
    if isinstance(config, str):
        config = get_preset(config)
    if base_weights is None:
        base_weights = default_base_weights(config)
    if base_weights not in ("official", "random"):
        raise ValueError(f"base_weights must be 'official' or 'random', got {base_weights!r}.")
    given = {"sam": sam_weights, "clip": clip_weights}
    needed = [role for role in ROLES if given[role] is None] if base_weights == "official" else []
    official = [official_file(role, config) for role in needed]
    if any(file is None for file in official):
        raise ValueError(
            f"Preset {config.name!r} has no official weights; use base_weights='random'."
        )
    files = dict(given)
    # Every missing official file is reported at once, before anything heavy is built.
    fetched = official_paths([file for file in official if file is not None], preset=config.name)
    files.update(zip(needed, fetched, strict=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(config.sam)
        clip = build_clip(config.clip)
        # Adapters are initialised from the same seeded stream, after the base modules.
        if files["sam"] is not None:
            load_sam_weights(sam, config.sam.variant, files["sam"])
        if files["clip"] is not None:
            load_clip_weights(clip, config.clip.arch, files["clip"])
        resize_input(sam, config.sam)
        resize_positional_embedding(clip.visual, config.clip.clip_size)
        model = CLIPGuidedSAM(config, sam, SemanticGuide(clip, config.clip, config.guide))
    configure_trainable(model)
    sources = {}
    for role in ROLES:
        file = files[role]
        sources[role] = BaseSource("random") if file is None else identify(role, config, file)
    model.base = BaseWeights(sources["sam"], sources["clip"], seed)
    use_fused_attention(model)
    return model.eval()
