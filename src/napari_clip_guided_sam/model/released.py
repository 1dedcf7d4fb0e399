"""Import the authors' released checkpoint layout into the `reference` preset.

Their file is a torch pickle of plain tensors with
- `model_state_dict`: SAM with the adapters inside the encoder blocks
  (`image_encoder.blocks.{i}.Space_Adapter.D_fc1/D_fc2`,
  `image_encoder.blocks.{i}.MLP_Adapter.D_fc1/D_fc2/text_projection/vis_projection`);
- `clip_model`: their CLIP Surgery state dict in OpenAI key names, where visual blocks that
  carry surgery use `attn.qkv`/`attn.proj` instead of `attn.in_proj_*`/`attn.out_proj`, a
  duplicate `visual.attn.*` exists, and the positional embedding is already resized.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .base_weights import BaseWeights
from .clip_guided_sam import CLIPGuidedSAM
from .config import REFERENCE, ModelConfig
from .factory import build_model, has_official_weights
from .weights import WeightsError, clean_openai_clip_state, load_tensor_file, strict_load

_ADAPTER_KEY = re.compile(
    r"image_encoder\.blocks\.(\d+)\.(Space_Adapter|MLP_Adapter)\."
    r"(D_fc1|D_fc2|text_projection|vis_projection)\.(weight|bias)"
)
_ADAPTER_NAMES = {
    "Space_Adapter": "regular",
    "MLP_Adapter": "semantic",
    "D_fc1": "fc1",
    "D_fc2": "fc2",
    "text_projection": "text_projection",
    "vis_projection": "vision_projection",
}
_SURGERY_ATTN = re.compile(
    r"(visual\.transformer\.resblocks\.\d+\.attn\.)(qkv|proj)\.(weight|bias)"
)


def split_sam_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Their SAM state -> (base SAM keys, our adapter keys `{block}.regular.fc1.weight`…)."""
    base, adapters = {}, {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        match = _ADAPTER_KEY.fullmatch(key)
        if match:
            block, group, layer, leaf = match.groups()
            adapters[f"{block}.{_ADAPTER_NAMES[group]}.{_ADAPTER_NAMES[layer]}.{leaf}"] = value
        else:
            base[key] = value
    return base, adapters


def convert_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their CLIP Surgery state dict -> open_clip `CLIP` keys."""
    converted = {}
    for key, value in clean_openai_clip_state(state).items():
        if key.startswith("visual.attn."):
            continue  # a duplicate of the first surgery block's attention, unused
        match = _SURGERY_ATTN.fullmatch(key)
        if match:
            prefix, layer, leaf = match.groups()
            key = prefix + ("in_proj_" + leaf if layer == "qkv" else "out_proj." + leaf)
        converted[key] = value
    return converted


def import_released_checkpoint(path: str | Path, config: ModelConfig = REFERENCE) -> CLIPGuidedSAM:
    """Build `config` (default: `reference`) from the authors' checkpoint file."""
    raw: Mapping[str, Any] = load_tensor_file(path)
    if "model_state_dict" not in raw or "clip_model" not in raw:
        raise WeightsError(
            f"{path} is not a released CLIP-Guided SAM checkpoint: expected the entries "
            f"'model_state_dict' and 'clip_model', found {sorted(raw)[:5]}."
        )
    model = build_model(config, base_weights="random")
    sam_state, adapter_state = split_sam_state(raw["model_state_dict"])
    strict_load(model.sam, sam_state, "SAM (released checkpoint)")
    if model.adapters is None:
        raise WeightsError("The released checkpoint has adapters; use a config with adapters on.")
    strict_load(model.adapters, adapter_state, "the adapters (released checkpoint)")
    strict_load(
        model.guide.clip, convert_clip_state(raw["clip_model"]), "CLIP (released checkpoint)"
    )
    if has_official_weights(config):  # their frozen SAM and CLIP are the official files
        model.base = BaseWeights.official(config)
    model.fine_tuned = True
    model.guide.reset_text_cache()
    return model.eval()
