"""Configuration dataclasses and named presets for CLIP-Guided SAM.

See docs/architecture.md, "Presets and weights".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

TokenNorm = Literal["paper", "reference"]
ResizeMode = Literal["squash", "longest_side_pad"]
LossKind = Literal["bce_dice_iou", "bce"]
TextGradient = Literal["redundant", "class"]
AdapterInit = Literal["released", "identity"]
ADAPTER_INITS: tuple[str, ...] = ("released", "identity")


@dataclass(frozen=True)
class SamConfig:
    """SAM architecture; the defaults are segment-anything's vit_b."""

    variant: str = "vit_b"  # registry name of the official checkpoint ("tiny" has none)
    image_size: int = 1024  # side of the square SAM input frame
    # Input side the base weights were made for (None: `image_size`). When it differs, SAM
    # is built at this size, its weights are loaded strictly, and the absolute position
    # embedding and the global blocks' relative-position tables are interpolated to
    # `image_size` ("Smaller inputs" in docs/architecture.md).
    base_image_size: int | None = None
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)  # all other blocks use windows
    window_size: int = 14
    prompt_embed_dim: int = 256  # width of prompt encoder, decoder and image embedding
    decoder_mlp_dim: int = 2048
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    mask_in_chans: int = 16
    iou_head_hidden_dim: int = 256

    @property
    def grid_size(self) -> int:
        """Side of the image-embedding token grid (64 at 1024 px)."""
        return self.image_size // self.patch_size

    @property
    def weights_image_size(self) -> int:
        """The input side SAM is built at before its base weights load."""
        return self.image_size if self.base_image_size is None else self.base_image_size

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution logits and of the dense prompt (256)."""
        return 4 * self.grid_size


@dataclass(frozen=True)
class ClipConfig:
    """CLIP architecture (an open_clip model name or an explicit tiny config)."""

    arch: str = "ViT-B-16"  # open_clip model name; "tiny" uses `tiny_model_cfg`
    pretrained: str = "openai"  # open_clip pretrained tag of the base weights
    clip_size: int = 512  # guide input resolution; positional embedding is resized to it
    surgery_depth: int = 6  # the last N visual blocks get the v-v attention path
    tiny_model_cfg: dict[str, Any] | None = None  # open_clip-style cfg when arch == "tiny"


@dataclass(frozen=True)
class GuideConfig:
    """How CLIP features become similarity maps and prompts (see "Semantic guide")."""

    token_norm: TokenNorm = "paper"  # "reference" normalises over the token axis (a quirk)
    threshold: float = 0.8  # tau: binary prompt mask = similarity map > tau
    n_points: int = 5  # positive points sampled from the mask in text-only mode
    n_negative_points: int = 0  # optional negatives sampled from map < 1 - tau
    point_seed: int = 42  # seed of the CPU generator used for inference point sampling
    dense_prompt_scale: float = 255.0  # value of "on" pixels in the 0/scale dense prompt
    class_name_ensemble: bool = False  # average the class name over the prompt templates
    feature_surgery: bool = False  # CLIP Surgery's multi-class feature surgery
    # Which text feature carries the gradient to a trainable text positional embedding:
    # "redundant" (released code): the 85-template empty-prompt ensemble r, recomputed at
    # every training forward, while the class feature has none; "class" (this project's
    # checkpoints before the field existed): the class feature, r cached without gradient.
    text_gradient: TextGradient = "redundant"


@dataclass(frozen=True)
class AdapterConfig:
    """Regular and semantic adapters inside SAM's image encoder (see "Adapters")."""

    enabled: bool = True  # False gives vanilla SAM (plus the CLIP-derived prompts)
    mlp_ratio: float = 0.25  # hidden width = ratio * encoder width
    alpha: float = 0.5  # scale of the adapter branches
    # Encoder blocks that carry adapters (None = every block). With adapters only in the last
    # blocks, the blocks before them are frozen and class-independent: training computes
    # them once per image ("Frozen prefix" in docs/architecture.md).
    blocks: tuple[int, ...] | None = None
    semantic_blocks: tuple[int, ...] | None = None  # None = every block in `blocks`
    use_text: bool = True
    use_vision: bool = True
    use_similarity: bool = True
    pad_before_norm: bool = False  # reference quirk: window padding enters as norm1.bias
    # "released": PyTorch's default init and the released code's inner skip in the regular
    # adapter (what the authors trained from); "identity": output layers start at zero and
    # no inner skip, so the untrained adapted encoder is exactly vanilla SAM.
    init: AdapterInit = "released"


@dataclass(frozen=True)
class TrainableConfig:
    """Which parameters training updates (see "Training"); everything else is frozen."""

    clip_attention_blocks: int = 12  # last N CLIP visual blocks with trainable attention
    # The paper freezes CLIP's text encoder; the released code (`reference`) trains the text
    # positional embedding through `GuideConfig.text_gradient` (docs/model.md).
    text_positional_embedding: bool = False
    prompt_encoder: bool = True
    mask_decoder: bool = True
    adapters: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build, train and run one CLIP-Guided SAM model."""

    name: str = "paper"
    sam: SamConfig = field(default_factory=SamConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    resize: ResizeMode = "squash"  # how images reach the SAM input frame
    loss: LossKind = "bce_dice_iou"

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with top-level fields or dotted sub-fields (``"guide.threshold"``) changed."""
        groups: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            group, _, leaf = key.replace("__", ".").partition(".")
            if leaf:
                groups.setdefault(group, {})[leaf] = value
            else:
                top[group] = value
        for group, leaves in groups.items():
            top[group] = dataclasses.replace(getattr(self, group), **leaves)
        return dataclasses.replace(self, **top)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error so typos never pass silently."""
        sub = {
            "sam": SamConfig,
            "clip": ClipConfig,
            "guide": GuideConfig,
            "adapters": AdapterConfig,
            "trainable": TrainableConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sub:
                kwargs[key] = _dataclass_from_dict(
                    sub[key], {**_SAVED_BEFORE.get(key, {}), **value}
                )
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise ValueError(f"Unknown model config field {key!r}.")
        return cls(**kwargs)


def adapted_blocks(config: ModelConfig) -> tuple[int, ...]:
    """The SAM encoder blocks that carry adapters (none when the adapters are off)."""
    if not config.adapters.enabled:
        return ()
    blocks = config.adapters.blocks
    return tuple(range(config.sam.encoder_depth)) if blocks is None else tuple(sorted(blocks))


def with_compute_choices(
    config: ModelConfig,
    *,
    image_size: int | None = None,
    adapter_blocks: int | None = None,
    clip_trainable_blocks: int | None = None,
) -> ModelConfig:
    """`config` with the architecture choices that trade accuracy for training cost.

    image_size: SAM's input side (the base weights' position tables are interpolated from
    their own size). adapter_blocks: adapters in the last N encoder blocks only (the
    semantic ones too). clip_trainable_blocks: CLIP's visual attention trains in the last
    M blocks only. None keeps the config's choice.
    """
    changes: dict[str, Any] = {}
    sam = config.sam
    if image_size is not None and image_size != sam.image_size:
        if image_size < sam.patch_size or image_size % sam.patch_size:
            raise ValueError(
                f"The SAM input size must be a multiple of the patch size {sam.patch_size}, "
                f"got {image_size}."
            )
        changes["sam.image_size"] = image_size
        changes["sam.base_image_size"] = sam.weights_image_size
    if adapter_blocks is not None:
        depth = sam.encoder_depth
        if not 1 <= adapter_blocks <= depth:
            raise ValueError(
                f"Adapters can sit in the last 1 to {depth} encoder blocks, got {adapter_blocks}."
            )
        last = tuple(range(depth - adapter_blocks, depth))
        changes["adapters.blocks"] = None if adapter_blocks == depth else last
        semantic = config.adapters.semantic_blocks
        if semantic is not None:  # keep an ablation's choice where it still has adapters
            changes["adapters.semantic_blocks"] = tuple(b for b in semantic if b in last)
    if clip_trainable_blocks is not None:
        if clip_trainable_blocks < 0:
            raise ValueError(f"clip_trainable_blocks must be >= 0, got {clip_trainable_blocks}.")
        changes["trainable.clip_attention_blocks"] = clip_trainable_blocks
    return config.replace(**changes) if changes else config


# Fields added after configs were first saved, with the value that describes a config saved
# without them (a checkpoint records how it was trained, not today's default).
_SAVED_BEFORE: dict[str, dict[str, Any]] = {"guide": {"text_gradient": "class"}}


def _dataclass_from_dict(kind: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"Unknown {kind.__name__} field(s): {sorted(unknown)}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return kind(**values)


SAM_VARIANTS: dict[str, SamConfig] = {
    "vit_b": SamConfig(),
    "vit_l": SamConfig(
        variant="vit_l",
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": SamConfig(
        variant="vit_h",
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        global_attn_indexes=(7, 15, 23, 31),
    ),
}

# A few blocks and small widths, random weights: every code path of `paper` at a size a
# 2-core CPU trains in minutes. The 16x16 token grid still needs window padding (16 % 14).
TINY_SAM = SamConfig(
    variant="tiny",
    image_size=256,
    encoder_embed_dim=64,
    encoder_depth=4,
    encoder_num_heads=2,
    global_attn_indexes=(1, 3),
    prompt_embed_dim=64,
    decoder_mlp_dim=256,
    mask_in_chans=8,
    iou_head_hidden_dim=64,
)
TINY_CLIP = ClipConfig(
    arch="tiny",
    pretrained="none",
    clip_size=128,  # 8x8 patches, interpolated from the 4x4 grid of the 64 px base model
    surgery_depth=2,
    tiny_model_cfg={
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 64,
            "layers": 4,
            "width": 64,
            "patch_size": 16,
            "head_width": 32,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
)

# The adapter initialisation fine-tuning of a pretrained base starts from (every preset
# but `reference` and `tiny`): `identity` starts at the zero-shot model, so SAM's
# pretrained features are intact at step 0, and learned as fast as `released` on tiny
# (benchmarks/adapter_init.py; figures in docs/training.md).
FINE_TUNING_INIT: AdapterInit = "identity"

PAPER = ModelConfig(adapters=AdapterConfig(init=FINE_TUNING_INIT))
REFERENCE = PAPER.replace(
    name="reference",
    loss="bce",
    **{
        "guide.token_norm": "reference",
        "adapters.pad_before_norm": True,
        "adapters.init": "released",  # checkpoint parity with the authors' code
        "trainable.text_positional_embedding": True,
    },
)
TINY = PAPER.replace(
    name="tiny",
    sam=TINY_SAM,
    clip=TINY_CLIP,
    **{
        "trainable.clip_attention_blocks": 4,
        # A random base has no pretrained features to keep, and both inits learned alike
        # (docs/training.md); `released` keeps a fresh tiny model's adapters class-dependent.
        "adapters.init": "released",
    },
)
# `tiny` at a finer input for training from scratch on a CPU: a 28x28 token grid (two whole
# 14-token windows, so the windowed blocks pad nothing) and logits at 112x112. In the same
# CPU minutes it learns more than `tiny` at 256 px (docs/training.md, "A preset for training
# from scratch on a CPU"); `tiny` stays the fast preset of the tests.
TINY_448 = TINY.replace(name="tiny_448", **{"sam.image_size": 448})
# Presets whose base weights are random: trained from scratch, with a larger learning rate
# (training/config.py) and their own recipe (training/recipe.py).
FROM_SCRATCH_PRESETS: tuple[str, ...] = (TINY.name, TINY_448.name)

# Fine-tuning the paper architecture on a laptop CPU (docs/training.md, "CPU-friendly
# fine-tuning"): SAM at 512 px, adapters in the last 3 encoder blocks, CLIP's attention
# trained in its last 2 blocks; everything before them is computed once per image.
CPU_FRIENDLY = {"image_size": 512, "adapter_blocks": 3, "clip_trainable_blocks": 2}
PAPER_CPU = with_compute_choices(PAPER, **CPU_FRIENDLY).replace(name="paper_cpu")

PRESETS: dict[str, ModelConfig] = {
    "paper": PAPER,
    "reference": REFERENCE,
    "tiny": TINY,
    "tiny_448": TINY_448,
    "paper_cpu": PAPER_CPU,
    "paper_vit_l": PAPER.replace(name="paper_vit_l", sam=SAM_VARIANTS["vit_l"]),
    "paper_vit_h": PAPER.replace(name="paper_vit_h", sam=SAM_VARIANTS["vit_h"]),
    # Paper Table 4: CLIP ViT-L/14 (24 blocks, patch 14); 518 px keeps a whole 37x37 grid.
    "paper_clip_l14": PAPER.replace(
        name="paper_clip_l14",
        clip=ClipConfig(arch="ViT-L-14", clip_size=518),
        **{"trainable.clip_attention_blocks": 24},
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The named preset; an unknown name lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.") from None
