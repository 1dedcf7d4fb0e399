"""Optional `torch.compile` of SAM's image encoder, the stage that dominates every run.

Off by default: on a CPU, compiling the ViT-B encoder takes minutes before the first
result, more than it saves over the first few images (benchmarks/inference.py measures
both; docs/performance.md). The adapters' hooks and the fused attention are traced into
the compiled graph; a new CLIP guidance per call does not recompile it. A model with a
frozen prefix or activation checkpointing runs its encoder block by block
(docs/architecture.md, "Frozen prefix"), past the compiled whole-encoder graph.
"""

from __future__ import annotations

from .clip_guided_sam import CLIPGuidedSAM


def compile_image_encoder(model: CLIPGuidedSAM, backend: str = "inductor") -> bool:
    """Compile `model.sam.image_encoder` in place; compilation happens at the first call
    for each input shape; `backend` is torch.compile's. Returns False, compiling nothing,
    when the model runs its encoder block by block (`encoder_runs_by_block`), past the
    compiled call."""
    if model.encoder_runs_by_block():
        return False
    model.sam.image_encoder.compile(backend=backend, dynamic=False)
    return True
