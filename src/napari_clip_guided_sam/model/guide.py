"""The semantic guide: CLIP Surgery on open_clip weights (docs/architecture.md, "Semantic
guide").

CLIP's visual tower gets a second, parallel "v-v attention" path in its last blocks, whose
patch tokens localise text concepts far better than the original path. The guide turns an
image and class names into normalised visual tokens, per-token similarities and a
similarity map in the SAM input frame.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from .config import ClipConfig, GuideConfig

# Class prompts: longer names are not names (CLIP reads 77 tokens, prompt templates included).
MAX_CLASS_NAME_LENGTH = 100
RESERVED_CLASS_NAMES = ("background",)  # label 0 of every output, compared case-blind


def build_clip(config: ClipConfig) -> open_clip.CLIP:
    """An open_clip CLIP with random weights and QuickGELU, as OpenAI trained it."""
    if config.arch == "tiny":
        if config.tiny_model_cfg is None:
            raise ValueError("ClipConfig(arch='tiny') needs tiny_model_cfg.")
        model_cfg = json.loads(json.dumps(config.tiny_model_cfg))
    else:
        model_cfg = open_clip.get_model_config(config.arch)
        if model_cfg is None:
            raise ValueError(
                f"Unknown CLIP architecture {config.arch!r}; use an open_clip model name "
                "such as 'ViT-B-16' or 'ViT-L-14'."
            )
    return open_clip.CLIP(**model_cfg, quick_gelu=True)


@functools.lru_cache(maxsize=4)
def get_tokenizer(arch: str):
    """open_clip's tokenizer (OpenAI's BPE for the CLIP models we use); loading is slow."""
    return open_clip.get_tokenizer("ViT-B-16" if arch == "tiny" else arch)


@functools.lru_cache(maxsize=1)
def prompt_templates() -> tuple[str, ...]:
    """The 85 templates whose empty-string mean is CLIP Surgery's redundant feature."""
    text = resources.files(__package__).joinpath("resources/clip_prompt_templates.json")
    return tuple(json.loads(text.read_text(encoding="utf-8"))["templates"])


def resize_positional_embedding(visual: VisionTransformer, image_size: int) -> None:
    """Interpolate the patch part of CLIP's positional embedding to a new input size.

    The CLS row is kept; the square patch grid is resized bilinearly (align_corners=False).
    Called once, after the original weights are loaded strictly.
    """
    patch = visual.conv1.kernel_size[0]
    if image_size % patch:
        raise ValueError(f"clip_size {image_size} is not a multiple of the patch size {patch}.")
    new_side = image_size // patch
    embedding = visual.positional_embedding.data
    old_side = int(round((embedding.shape[0] - 1) ** 0.5))
    if old_side != new_side:
        cls_row, grid = embedding[:1], embedding[1:]
        grid = grid.reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2)
        if grid.device.type != "meta":
            grid = F.interpolate(
                grid.float(), size=(new_side, new_side), mode="bilinear", align_corners=False
            ).to(embedding.dtype)
        else:
            grid = grid.new_empty(1, grid.shape[1], new_side, new_side)
        grid = grid.permute(0, 2, 3, 1).reshape(new_side * new_side, -1)
        visual.positional_embedding = nn.Parameter(torch.cat([cls_row, grid], dim=0))
    visual.grid_size = (new_side, new_side)
    visual.image_size = (image_size, image_size)


# The visual tower's two residual streams (original path, v-v path) between two blocks.
VisualStreams = tuple[torch.Tensor, torch.Tensor]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, C] -> [B, heads, L, C / heads]."""
    batch, length, width = x.shape
    return x.reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, L, d] -> [B, L, heads * d]."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, fused: bool = False
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v. Unfused, it is written out as CLIP Surgery does, so
    results match the released code to the last bits that decide the thresholded prompts;
    fused (`scaled_dot_product_attention`) it agrees to about 1e-6 and is several times
    faster on the CPU."""
    if fused:
        return F.scaled_dot_product_attention(query, key, value)
    weights = (query @ key.transpose(-2, -1)) * query.shape[-1] ** -0.5
    return weights.softmax(dim=-1) @ value


def _heads(block: ResidualAttentionBlock, hidden: torch.Tensor) -> list[torch.Tensor]:
    """The block's q, k and v of `hidden` (its `ln_1` output), each [B, heads, L, d]."""
    attn: nn.MultiheadAttention = block.attn
    qkv = F.linear(hidden, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return [_split_heads(t, attn.num_heads) for t in qkv]


def plain_block(
    block: ResidualAttentionBlock, x: torch.Tensor, fused: bool = False
) -> torch.Tensor:
    """One block before the surgery blocks: open_clip's own code, or with fused attention the
    same function through `scaled_dot_product_attention` (the block's `nn.MultiheadAttention`
    runs its attention unfused on the CPU). x: [B, L, C] -> same shape."""
    if not fused:
        return block(x)
    q, k, v = _heads(block, block.ln_1(x))
    x = x + block.ls_1(block.attn.out_proj(_merge_heads(_attend(q, k, v, fused=True))))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def surgery_block(
    block: ResidualAttentionBlock,
    x_ori: torch.Tensor,
    x_new: torch.Tensor,
    fused: bool = False,
    class_token_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One dual-path block: the original block on `x_ori`, and v-v attention added to `x_new`.

    Both paths share the block's `in_proj`/`out_proj`; the v-v path replaces q and k by v,
    reads `ln_1` of the *original* path's input, and has no MLP and no LayerNorm of its own.
    x_ori, x_new: [B, L, C] -> the updated pair, same shapes. fused: attention through
    `scaled_dot_product_attention`. class_token_only: the original path only for its first
    (class) token, x_ori -> [B, 1, C] (after the last block, the only one the tokens read).
    """
    attn: nn.MultiheadAttention = block.attn
    q, k, v = _heads(block, block.ln_1(x_ori))
    if class_token_only:
        q, x_ori = q[:, :, :1], x_ori[:, :1]
    original = _merge_heads(_attend(q, k, v, fused))
    value_value = _merge_heads(_attend(v, v, v, fused))
    x_ori = x_ori + block.ls_1(attn.out_proj(original))
    x_ori = x_ori + block.ls_2(block.mlp(block.ln_2(x_ori)))
    x_new = x_new + attn.out_proj(value_value)
    return x_ori, x_new


class SemanticGuide(nn.Module):
    """CLIP Surgery features: visual tokens, text features, similarities and maps."""

    def __init__(self, clip: open_clip.CLIP, clip_config: ClipConfig, guide_config: GuideConfig):
        super().__init__()
        self.clip = clip
        self.clip_config = clip_config
        self.guide_config = guide_config
        depth = len(clip.visual.transformer.resblocks)
        if not 0 < clip_config.surgery_depth <= depth:
            raise ValueError(
                f"surgery_depth must be in 1..{depth}, got {clip_config.surgery_depth}."
            )
        if guide_config.text_gradient not in ("redundant", "class"):
            raise ValueError(
                f"text_gradient must be 'redundant' or 'class', got {guide_config.text_gradient!r}."
            )
        self._redundant: torch.Tensor | None = None
        # Runtime switch (model.attention.use_fused_attention), not part of the architecture.
        self.fused_attention = False

    @property
    def embed_dim(self) -> int:
        return self.clip.text_projection.shape[1]

    # ----------------------------------------------------------------- vision
    def encode_image_tokens(self, clip_input: torch.Tensor) -> torch.Tensor:
        """CLIP Surgery tokens of a batch of guide inputs.

        clip_input: [B, 3, s, s] (s = clip_size) -> [B, 1 + N, D] after `ln_post` and `proj`,
        the CLS token taken from the original path, the patch tokens from the v-v path.
        """
        return self.finish_tokens(self.visual_streams(clip_input, 0), 0)

    def visual_streams(self, clip_input: torch.Tensor, stop: int) -> VisualStreams:
        """The visual tower's residual streams entering block `stop` (0 = after `ln_pre`).

        clip_input: [B, 3, s, s] -> (original path, v-v path), each [B, 1 + N, C]; before
        the surgery blocks both are the same tensor (after the last block, with fused
        attention, the original path is its class token only, [B, 1, C]). With
        `finish_tokens(streams, stop)` this splits `encode_image_tokens` at block `stop` (the
        frozen prefix that training computes once per image, docs/architecture.md "Frozen
        prefix").
        """
        visual = self.clip.visual
        x = visual.conv1(clip_input.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return self._run_blocks((visual.ln_pre(x),) * 2, 0, stop)

    def finish_tokens(self, streams: VisualStreams, start: int) -> torch.Tensor:
        """Blocks `start`.. of the visual tower, then the CLIP Surgery tokens [B, 1 + N, D]:
        the CLS token from the original path, the patch tokens from the v-v path."""
        visual = self.clip.visual
        x_ori, x_new = self._run_blocks(streams, start, len(visual.transformer.resblocks))
        tokens = torch.cat([x_ori[:, :1], x_new[:, 1:]], dim=1)
        return visual.ln_post(tokens) @ visual.proj

    def _run_blocks(self, streams: VisualStreams, start: int, stop: int) -> VisualStreams:
        blocks = self.clip.visual.transformer.resblocks
        first_surgery = len(blocks) - self.clip_config.surgery_depth
        x_ori, x_new = streams
        fused = self.fused_attention
        for index in range(start, stop):
            if index < first_surgery:
                x_ori = x_new = plain_block(blocks[index], x_ori, fused)
            else:
                # The speed path skips the last block's original patch tokens, which nothing
                # reads; the unfused path stays the released code's, bit for bit.
                last = fused and index == len(blocks) - 1
                x_ori, x_new = surgery_block(blocks[index], x_ori, x_new, fused, last)
        return x_ori, x_new

    # ------------------------------------------------------------------- text
    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        device = self.clip.token_embedding.weight.device
        return get_tokenizer(self.clip_config.arch)(texts).to(device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Raw (unnormalised) text-tower features: list of K strings -> [K, D]."""
        return self.clip.encode_text(self._tokenize(texts))

    def _ensemble(self, name: str) -> torch.Tensor:
        """L2-normalised mean of the normalised features of `name` in every template: [D]."""
        features = F.normalize(
            self.encode_text([t.format(name) for t in prompt_templates()]), dim=-1
        )
        return F.normalize(features.mean(dim=0), dim=-1)

    def _trains_text(self, path: str) -> bool:
        """Whether this forward carries gradient to the text positional embedding via `path`
        ("redundant" or "class"): a training forward with grad mode on, the embedding
        trainable, the path chosen."""
        return (
            self.training
            and torch.is_grad_enabled()
            and self.clip.positional_embedding.requires_grad
            and self.guide_config.text_gradient == path
        )

    def redundant_feature(self) -> torch.Tensor:
        """CLIP Surgery's redundant feature r: the template ensemble of the empty string, [D].

        With the "redundant" gradient path in a training forward, r is recomputed with
        gradient every time (as the released code does); otherwise it is computed once
        without gradient and cached until `reset_text_cache`.
        """
        if self._trains_text("redundant"):
            # The optimiser step that follows changes r: drop a cached copy.
            self._redundant = None
            return self._ensemble("").float()
        if self._redundant is None:
            with torch.no_grad():
                self._redundant = self._ensemble("").float()
        return self._redundant

    def reset_text_cache(self) -> None:
        self._redundant = None

    def text_features(self, class_names: list[str]) -> torch.Tensor:
        """Guide text features t = normalize(e(class) - r): K names -> [K, D] (float32).

        The gradient to a trainable text positional embedding flows through r or through
        e(class), never both (`GuideConfig.text_gradient`).
        """
        validate_class_names(class_names)
        with torch.set_grad_enabled(self._trains_text("class")):
            if self.guide_config.class_name_ensemble:
                raw = torch.stack([self._ensemble(name) for name in class_names])
            else:
                raw = self.encode_text(list(class_names))
        redundant = self.redundant_feature().to(raw.device)
        return F.normalize(raw.float() - redundant, dim=-1)

    # ------------------------------------------------------------- similarity
    def normalize_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalise [B, 1+N, D] tokens per token ("paper") or over tokens ("reference")."""
        dim = -1 if self.guide_config.token_norm == "paper" else 1
        return tokens / tokens.norm(dim=dim, keepdim=True)

    def similarity(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Per-token similarity to each class.

        tokens: [B, 1+N, D] normalised; text: [B, K, D] -> [B, K, 1+N].
        """
        if self.guide_config.feature_surgery and text.shape[1] > 1:
            return feature_surgery_similarity(tokens, text)
        return torch.einsum("bnd,bkd->bkn", tokens, text.to(tokens.dtype))

    def similarity_map(self, similarity: torch.Tensor, size: int) -> torch.Tensor:
        """Min-max normalised patch similarities resized to the SAM frame.

        similarity: [B, K, 1+N] -> [B, K, size, size] in [0, 1].
        """
        patches = similarity[..., 1:].float()
        low = patches.amin(dim=-1, keepdim=True)
        high = patches.amax(dim=-1, keepdim=True)
        patches = (patches - low) / (high - low).clamp_min(1e-12)
        side = int(round(patches.shape[-1] ** 0.5))
        grid = patches.reshape(patches.shape[0], patches.shape[1], side, side)
        return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)


def feature_surgery_similarity(tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """CLIP Surgery's multi-class feature surgery: element-wise products, weighted by the
    CLS class probabilities, minus their class mean, summed over channels.

    tokens: [B, 1+N, D]; text: [B, K, D] -> [B, K, 1+N].
    """
    text = text.to(tokens.dtype)
    prob = torch.einsum("bd,bkd->bk", tokens[:, 0], text)
    prob = (prob * 2).softmax(dim=-1)
    weight = prob / prob.mean(dim=-1, keepdim=True)  # [B, K]
    products = tokens[:, None] * text[:, :, None] * weight[:, :, None, None]  # [B, K, 1+N, D]
    products = products - products.mean(dim=1, keepdim=True)
    return products.sum(dim=-1)


def validate_class_names(class_names) -> None:
    """Class prompts must be a non-empty list of distinct, printable, non-blank strings of at
    most `MAX_CLASS_NAME_LENGTH` characters, none of them reserved ("background" is label 0
    of every output, not a class to prompt for).

    The one check of class names: the CLI, batch runs, training and the widgets all pass
    through it, and every failure is a ValueError (TypeError for non-strings) that says what
    to type instead.
    """
    if isinstance(class_names, str) or not isinstance(class_names, list | tuple):
        raise TypeError(f"Class names must be a list of strings, got {type(class_names).__name__}.")
    if not class_names:
        raise ValueError("No class name given: type at least one, e.g. 'nucleus'.")
    for name in class_names:
        if not isinstance(name, str):
            raise TypeError(f"Class names must be strings, got {name!r}.")
        text = name.strip()
        if not text:
            raise ValueError("A class name is empty or only whitespace; type e.g. 'nucleus'.")
        if len(text) > MAX_CLASS_NAME_LENGTH:
            raise ValueError(
                f"The class name {text[:40]!r}... has {len(text)} characters; use at most "
                f"{MAX_CLASS_NAME_LENGTH}, a short name of what to segment, e.g. 'nucleus'."
            )
        if not text.isprintable():
            raise ValueError(
                f"The class name {text!r} holds control characters (new line, tab...); type "
                "the name on one line, e.g. 'nucleus'."
            )
        if text.casefold() in RESERVED_CLASS_NAMES:
            raise ValueError(
                f"{text!r} cannot be a class name: label 0 of every output is the background; "
                "name what to segment instead, e.g. 'nucleus'."
            )
    names = [name.strip() for name in class_names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Class name(s) given twice: {', '.join(duplicates)}; give each class once."
        )
