"""Fused attention in the encoders: one runtime switch, same weights, same hooks.

segment-anything's image encoder writes attention out: it materialises the attention matrix,
adds the decomposed relative-position bias to it and applies softmax, three tensors of
heads x tokens x tokens (805 MB each in every global block of ViT-B at 1024 px).
`FusedSamAttention` computes the same function with
`torch.nn.functional.scaled_dot_product_attention`, the bias passed as an additive mask.

The switch changes the class of each segment-anything `Attention` instance in place, after the
strict weight load: parameters, state-dict keys and the forward hooks and pre-hooks that the
adapters registered on `block.attn` stay exactly as they were, and switching off restores
segment-anything's own code, bit for bit. It is a runtime choice, not part of the
architecture: checkpoints do not record it. CLIP's original attention path already runs
through `nn.MultiheadAttention` (fused); the switch also covers the CLIP Surgery blocks
(`SemanticGuide.fused_attention`).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

from .guide import SemanticGuide

# Without autograd the bias mask is built a piece at a time (some images, heads and query rows)
# in one buffer of at most this size, each piece read by attention right after it is written.
# A whole 805 MB mask per global block costs more in page faults than the attention itself on
# small CPUs, and pieces that stay in the last-level cache (16 MB: half of a 32 MB L3) measured
# 0.51 s per ViT-B global block against 0.61 s for 64 MB pieces (docs/performance.md).
MASK_CHUNK_BYTES = 16 * 2**20


class FusedSamAttention(Attention):
    """segment-anything's `Attention` computed by `scaled_dot_product_attention`.

    No parameters of its own: instances are segment-anything `Attention` objects whose class
    was switched by `use_fused_attention`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, H, W, C] -> [B, H, W, C], as `Attention.forward`."""
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, d]
        if self.use_rel_pos:
            out = relative_position_attention(
                query, key, value, self.rel_pos_h, self.rel_pos_w, (height, width)
            )
        else:
            out = F.scaled_dot_product_attention(query, key, value)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


def relative_position_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    max_mask_bytes: int = MASK_CHUNK_BYTES,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + B) v with SAM's decomposed relative-position bias B.

    query, key, value: [B, heads, h * w, d] over an h x w token grid -> [B, heads, h * w, d].
    B[i, j] = q_i . Rh[h(i), h(j)] + q_i . Rw[w(i), w(j)], as segment-anything's
    `add_decomposed_rel_pos` (the unscaled query). With autograd the whole mask is built
    (its gradient flows to the query), as under torch.compile; otherwise a piece at a time
    (`_mask_pieces`), in one buffer of at most `max_mask_bytes` (at least one grid row).
    """
    height, width = size
    batch, heads, tokens, _ = query.shape
    grid_query = query.reshape(batch, heads, height, width, -1)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_query, get_rel_pos(height, height, rel_pos_h))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_query, get_rel_pos(width, width, rel_pos_w))
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (query, key, value, rel_pos_h, rel_pos_w)
    )
    if needs_grad or torch.compiler.is_compiling():  # (the compiler plans memory itself)
        mask = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, tokens, tokens)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask.to(query.dtype))

    images, heads_per_piece, rows = _mask_pieces(
        batch, heads, height, width * tokens * query.element_size(), max_mask_bytes
    )
    storage = query.new_empty(images * heads_per_piece * rows * width * tokens)
    out = torch.empty_like(query, memory_format=torch.contiguous_format)
    pieces = itertools.product(
        range(0, batch, images), range(0, heads, heads_per_piece), range(0, height, rows)
    )
    for b, h, start in pieces:
        piece = (slice(b, b + images), slice(h, h + heads_per_piece))
        rows_h = rel_h[piece][:, :, start : start + rows]
        rows_w = rel_w[piece][:, :, start : start + rows]
        shape = rows_h.shape[:3]  # [images, heads, rows] of this piece
        mask = storage[: shape.numel() * width * tokens].view(*shape, width, height, width)
        torch.add(rows_h[..., :, None], rows_w[..., None, :], out=mask)
        queries = slice(start * width, (start + shape[2]) * width)
        out[piece][:, :, queries] = F.scaled_dot_product_attention(
            query[piece][:, :, queries],
            key[piece],
            value[piece],
            attn_mask=mask.view(*shape[:2], shape[2] * width, tokens),
        )
    return out


def _mask_pieces(
    batch: int, heads: int, height: int, row_bytes: int, max_bytes: int
) -> tuple[int, int, int]:
    """How many images, heads and grid rows of queries one piece of the bias mask covers.

    row_bytes: the mask of one grid row of queries for one image and head. Whole heads (all
    of an image's, then several images') while they fit in `max_bytes`, else a few rows of
    one head's queries (at least one row).
    """
    grid_bytes = height * row_bytes
    if heads * grid_bytes <= max_bytes:
        return max(1, min(batch, max_bytes // (heads * grid_bytes))), heads, height
    if grid_bytes <= max_bytes:
        return 1, max_bytes // grid_bytes, height
    return 1, 1, max(1, min(height, max_bytes // row_bytes))


def use_fused_attention(model: nn.Module, enabled: bool = True) -> None:
    """Switch fused attention on or off everywhere in `model` (a CLIPGuidedSAM, a SAM or
    any module holding SAM image-encoder attention or a CLIP Surgery guide)."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.__class__ = FusedSamAttention if enabled else Attention
        elif isinstance(module, SemanticGuide):
            module.fused_attention = enabled


def uses_fused_attention(model: nn.Module) -> bool:
    """Whether `model`'s SAM image-encoder attention is fused."""
    return any(isinstance(m, FusedSamAttention) for m in model.modules())
