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

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

from .guide import SemanticGuide

# Without autograd the bias mask is built a few query rows at a time in one buffer of at most
# this size: a fresh 805 MB mask per global block costs more in page faults than the
# attention itself on small CPUs.
MASK_CHUNK_BYTES = 64 * 2**20


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
    (its gradient flows to the query), as under torch.compile; otherwise a few query rows
    of it at a time, in one buffer of at most `max_mask_bytes` (at least one grid row).
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

    row_bytes = batch * heads * width * tokens * query.element_size()
    rows = max(1, min(height, max_mask_bytes // row_bytes))
    storage = query.new_empty(batch * heads * rows * width * tokens)
    out = torch.empty_like(query, memory_format=torch.contiguous_format)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        mask = storage[: batch * heads * (stop - start) * width * tokens]
        mask = mask.view(batch, heads, stop - start, width, height, width)
        rows_h, rows_w = rel_h[:, :, start:stop], rel_w[:, :, start:stop]
        torch.add(rows_h[..., :, None], rows_w[..., None, :], out=mask)
        queries = slice(start * width, stop * width)
        out[:, :, queries] = F.scaled_dot_product_attention(
            query[:, :, queries],
            key,
            value,
            attn_mask=mask.view(batch, heads, (stop - start) * width, tokens),
        )
    return out


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
