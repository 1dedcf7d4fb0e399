"""Regular and semantic adapters hooked into segment-anything's image encoder.

See docs/architecture.md, "Adapters".

The adapters are attached with forward hooks on each encoder block's `attn` and `mlp`, so
SAM's own modules, code and state-dict keys stay untouched; the adapters' parameters live
in `EncoderAdapters` (keys `adapters.{block}.regular.*` / `adapters.{block}.semantic.*`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Block, ImageEncoderViT
from torch import nn

from .config import AdapterConfig


class RegularAdapter(nn.Module):
    """Bottleneck MLP parallel to attention: a + alpha * (a + fc2(gelu(fc1(a)))).

    The inner `a +` is the released code's skip connection, kept for checkpoint parity
    (`inner_skip`); without it the adapter is a + alpha * fc2(gelu(fc1(a))).
    """

    def __init__(self, width: int, hidden: int, alpha: float, inner_skip: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.alpha = alpha
        self.inner_skip = inner_skip

    def forward(self, attention_out: torch.Tensor) -> torch.Tensor:
        """attention_out: [..., C] -> same shape."""
        branch = self.fc2(F.gelu(self.fc1(attention_out)))
        if self.inner_skip:
            branch += attention_out  # (in place: fc2's backward does not read its output)
        return torch.add(attention_out, branch, alpha=self.alpha)


@dataclass
class Guidance:
    """Per-forward semantic inputs shared by every semantic adapter.

    text: [P, D] guide text features (one row per image-class pair);
    vision: [P, 1+N, D] normalised CLIP tokens plus each token's similarity (or None when
    both the vision and similarity inputs are switched off).
    """

    text: torch.Tensor | None
    vision: torch.Tensor | None


class SemanticAdapter(nn.Module):
    """Bottleneck MLP parallel to SAM's MLP, fed with CLIP text and vision features.

    Returns alpha * fc2(gelu(fc1(xn + gelu(W_t t) + resize(W_v (V + s))))).
    """

    def __init__(self, width: int, hidden: int, guide_dim: int, config: AdapterConfig):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.text_projection = nn.Linear(guide_dim, width) if config.use_text else None
        uses_vision = config.use_vision or config.use_similarity
        self.vision_projection = nn.Linear(guide_dim, width) if uses_vision else None
        self.alpha = config.alpha

    def forward(self, normed: torch.Tensor, guidance: Guidance) -> torch.Tensor:
        """normed: norm2(x), [P, H, W, C] -> the adapter branch, same shape.

        fc1 is applied to each of the three inputs on its own and the results summed: the
        text as one vector per pair, the vision tokens on CLIP's grid before the resize.
        That is the same function (fc1 is affine, and bilinear resizing is linear with
        weights that sum to one) with the resize and the sums on fc1's narrow output
        instead of C channels at the encoder grid: half the adapter's time on a CPU.
        """
        hidden = F.linear(normed, self.fc1.weight)
        bias: torch.Tensor = self.fc1.bias
        if self.text_projection is not None and guidance.text is not None:
            text = F.gelu(self.text_projection(guidance.text.to(normed.dtype)))  # [P, C]
            bias = F.linear(text, self.fc1.weight, bias)[:, None, None, :]
        hidden += bias  # (in place: a matmul's backward does not read its output)
        if self.vision_projection is not None and guidance.vision is not None:
            hidden += self._vision_hidden(guidance.vision.to(normed.dtype), hidden.shape)
        return self.alpha * self.fc2(F.gelu(hidden))

    def _vision_hidden(self, vision: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """[P, 1+N, D] -> fc1's weight times the projected patch tokens, resized to the
        encoder grid: [P, H, W, hidden]."""
        assert self.vision_projection is not None
        weight = self.fc1.weight @ self.vision_projection.weight  # [hidden, D]
        bias = self.fc1.weight @ self.vision_projection.bias
        projected = F.linear(vision[:, 1:], weight, bias)
        side = int(round(projected.shape[1] ** 0.5))
        grid = projected.transpose(1, 2).reshape(projected.shape[0], -1, side, side)
        grid = F.interpolate(grid, size=tuple(shape[1:3]), mode="bilinear", align_corners=False)
        return grid.permute(0, 2, 3, 1)


class BlockAdapters(nn.Module):
    """The adapters of one encoder block (both None in a block without adapters)."""

    def __init__(self, regular: RegularAdapter | None, semantic: SemanticAdapter | None):
        super().__init__()
        self.regular = regular
        self.semantic = semantic

    @property
    def empty(self) -> bool:
        return self.regular is None and self.semantic is None


class EncoderAdapters(nn.ModuleList):
    """All blocks' adapters, and the hooks that splice them into a SAM image encoder.

    One entry per encoder block; blocks outside `AdapterConfig.blocks` get an empty entry,
    so tensor names stay `adapters.{block}.*` whichever blocks are adapted.
    """

    def __init__(self, encoder: ImageEncoderViT, guide_dim: int, config: AdapterConfig):
        width = encoder.blocks[0].norm1.normalized_shape[0]
        hidden = int(width * config.mlp_ratio)
        depth = len(encoder.blocks)
        blocks = _block_set("blocks", config.blocks, range(depth), depth)
        semantic_blocks = _block_set("semantic_blocks", config.semantic_blocks, blocks, depth)
        outside = sorted(set(semantic_blocks) - set(blocks))
        if outside:
            raise ValueError(
                f"semantic_blocks {outside} carry no adapters; semantic adapters go in a subset "
                f"of the adapted blocks {sorted(blocks)}."
            )
        inner_skip = config.init == "released"
        super().__init__(
            BlockAdapters(
                RegularAdapter(width, hidden, config.alpha, inner_skip) if b in blocks else None,
                SemanticAdapter(width, hidden, guide_dim, config) if b in semantic_blocks else None,
            )
            for b in range(depth)
        )
        if config.init == "identity":
            self._zero_output_layers()
        elif config.init != "released":
            raise ValueError(f"Unknown adapter init {config.init!r}; use 'released' or 'identity'.")
        self.config = config
        self.active = True  # False: every hook passes SAM's own output through (vanilla SAM)
        self._guidance: Guidance | None = None
        self._handles: list = []
        self._attach(encoder)

    def _zero_output_layers(self) -> None:
        """Identity start: every adapter branch outputs exactly zero until trained."""
        with torch.no_grad():
            block: BlockAdapters
            for block in self:  # type: ignore[assignment]
                for adapter in (block.regular, block.semantic):
                    if adapter is not None:
                        adapter.fc2.weight.zero_()
                        adapter.fc2.bias.zero_()

    def _attach(self, encoder: ImageEncoderViT) -> None:
        grid_size = encoder.pos_embed.shape[1]  # [1, grid, grid, C]
        adapters: BlockAdapters
        for block, adapters in zip(encoder.blocks, self, strict=True):  # type: ignore[assignment]
            if adapters.regular is not None:
                hook = _regular_hook(adapters.regular, self)
                self._handles.append(block.attn.register_forward_hook(hook))
            if adapters.semantic is not None:
                hook = _semantic_hook(adapters.semantic, self)
                self._handles.append(block.mlp.register_forward_hook(hook))
            if self.config.pad_before_norm and block.window_size > 0:
                fill = _padding_fill_hook(block, grid_size, self)
                self._handles.append(block.attn.register_forward_pre_hook(fill))

    def detach(self) -> None:
        """Remove the hooks: the encoder behaves exactly like vanilla SAM again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def adapted_blocks(self) -> list[int]:
        """Indices of the encoder blocks that carry adapters."""
        return [index for index, block in enumerate(self) if not block.empty]

    @contextlib.contextmanager
    def guided(self, guidance: Guidance) -> Iterator[None]:
        """Within the block, semantic adapters read `guidance` (nesting restores the outer
        guidance on exit, so a block recomputed inside the forward pass of another, as
        activation checkpointing does, leaves it intact)."""
        outer, self._guidance = self._guidance, guidance
        try:
            yield
        finally:
            self._guidance = outer

    def current_guidance(self) -> Guidance:
        if self._guidance is None:
            raise RuntimeError(
                "The semantic adapters need CLIP guidance: call the image encoder through "
                "CLIPGuidedSAM.encode_image, not directly."
            )
        return self._guidance


def _block_set(name: str, chosen, default, depth: int) -> list[int]:
    """Validated block indices (`default` when `chosen` is None)."""
    blocks = list(default if chosen is None else chosen)
    invalid = [b for b in blocks if not 0 <= b < depth]
    if invalid:
        raise ValueError(f"{name} {invalid} do not exist in a {depth}-block encoder.")
    return blocks


def _regular_hook(adapter: RegularAdapter, owner: EncoderAdapters):
    def hook(module, inputs, output):
        return adapter(output) if owner.active else None

    return hook


def _semantic_hook(adapter: SemanticAdapter, owner: EncoderAdapters):
    def hook(module, inputs, output):
        if not owner.active:
            return None
        return output + adapter(inputs[0], owner.current_guidance())

    return hook


def _padding_fill_hook(block: Block, grid_size: int, owner: EncoderAdapters):
    """Pre-hook on a windowed block's `attn`: padding tokens become `norm1.bias`.

    The released code pads the token grid to whole windows before `norm1`, so its padding
    enters attention as LayerNorm(0) = norm1.bias instead of SAM's zeros.
    """
    window = block.window_size
    per_side = -(-grid_size // window)
    padded = per_side * window
    # Which tokens of each image's windows are padding: [nW, window, window], window order
    # as in segment-anything's window_partition (row-major over windows).
    grid_mask = torch.zeros(padded, padded, dtype=torch.bool)
    grid_mask[grid_size:, :] = True
    grid_mask[:, grid_size:] = True
    window_mask = (
        grid_mask.reshape(per_side, window, per_side, window)
        .permute(0, 2, 1, 3)
        .reshape(per_side * per_side, window, window)
    )

    def hook(module, inputs):
        (windows,) = inputs  # [B * nW, window, window, C]
        if padded == grid_size or not owner.active:
            return None
        images = windows.shape[0] // window_mask.shape[0]
        mask = window_mask.to(windows.device).repeat(images, 1, 1)
        bias = block.norm1.bias.to(windows.dtype)
        return (torch.where(mask[..., None], bias, windows),)

    return hook
