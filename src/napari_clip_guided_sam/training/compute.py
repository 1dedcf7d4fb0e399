"""How a training run computes: frozen-prefix cache, activation checkpointing, fixed
augmentation variants (docs/training.md, "CPU-friendly fine-tuning").

None of these changes what a step computes, only what it keeps and what it repeats:

- The frozen prefix (the SAM and CLIP blocks before the first trained one) depends only on
  the input image, so a `PrefixStore` keeps it per image content: every later step, and
  every validation pass, on that image runs only the last blocks. Numbers are the same as
  without the cache.
- Activation checkpointing keeps only the input of each trained SAM block and recomputes the
  block in the backward pass: the same gradients for less memory and more time.
- Augmentation does not commute with the prefix (SAM's patch embedding, absolute position
  embedding and windows change under flips and quarter turns, intensity, scale and blur
  change everything), so an augmented image has its own prefix: the store is keyed by the
  augmented image's content, never by a transform of cached tokens. For the cache to pay,
  each sample cycles through a few fixed augmentations (`augment_variants`) instead of a
  fresh draw per visit. A variant is a fixed draw of the run's chosen augmentations
  (`inputs.Augmentation`: flips, and intensity, scale or blur when chosen), so every
  augmentation keeps its exact numbers; only the variety of draws per image is smaller.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..model.prefix_cache import PrefixStore
from ..model.runtime import CHECKPOINTING_CHOICES

# "auto" checkpoints the trained blocks on the CPU when they would keep more than this for
# the backward pass (paper at 1024 px: ~10 GiB with every block trained; `paper_cpu`, three
# blocks at 512 px: ~0.4 GiB).
CHECKPOINT_ABOVE_BYTES = 2 * 2**30
# Fixed augmentations per sample when a frozen prefix is cached and `augment_variants` is
# left to choose (None).
AUTO_AUGMENT_VARIANTS = 2
_STREAM_VARIANT = 3  # next to the engine's streams (torch 0, augmentation 1, points 2)


def has_frozen_prefix(model) -> bool:
    """Whether some leading SAM or CLIP blocks are frozen: a prefix cache can serve them."""
    return model.encoder_prefix_depth() > 0 or model.clip_prefix_depth() > 0


def activation_bytes(model, batch_size: int = 1) -> int:
    """An estimate, from the tensor shapes, of what the trained SAM encoder blocks keep for
    the backward pass in one training forward (fp32).

    Per token and block about 15 widths (LayerNorm outputs, q/k/v, attention output and
    projection, the MLP's 4x hidden layer before and after GELU, the adapters), plus two
    attention matrices (probabilities and the bias mask) per head: over each window in
    windowed blocks, over all tokens in global ones.
    """
    config = model.config.sam
    grid = config.grid_size
    window = config.window_size
    padded = -(-grid // window) * window
    width, heads = config.encoder_embed_dim, config.encoder_num_heads
    total = 0
    for index in range(model.encoder_prefix_depth(), config.encoder_depth):
        if index in config.global_attn_indexes:
            tokens, attended = grid * grid, grid * grid
        else:
            tokens, attended = padded * padded, window * window
        total += 4 * tokens * (15 * width + 2 * heads * attended)
    return total * batch_size


def uses_checkpointing(choice: str, model, device: torch.device, batch_size: int = 1) -> bool:
    """Whether to recompute the trained blocks: "on", "off", or "auto" (on the CPU when the
    activations they keep exceed `CHECKPOINT_ABOVE_BYTES`)."""
    if choice not in CHECKPOINTING_CHOICES:
        raise ValueError(
            f"activation_checkpointing must be one of {', '.join(CHECKPOINTING_CHOICES)}, "
            f"got {choice!r}."
        )
    if choice != "auto":
        return choice == "on"
    return device.type == "cpu" and activation_bytes(model, batch_size) > CHECKPOINT_ABOVE_BYTES


def resolve_augment_variants(chosen: int | None, caches_prefix: bool) -> int:
    """Fixed augmentations per sample (0: a fresh draw at every visit). None: 2 when a
    frozen prefix is cached, else 0."""
    if chosen is None:
        return AUTO_AUGMENT_VARIANTS if caches_prefix else 0
    return chosen


def variant_generators(
    seed: int, epoch: int, sample_indices: Iterable[int], variants: int
) -> list[np.random.Generator]:
    """One augmentation generator per sample: sample i uses its variant
    (epoch + offset_i) mod `variants`, so over `variants` epochs it sees each once, and the
    same variant always draws the same augmentation."""
    generators = []
    for index in sample_indices:
        index = int(index)
        offset = int(np.random.SeedSequence([seed, _STREAM_VARIANT, index]).generate_state(1)[0])
        variant = (epoch + offset) % variants
        sequence = np.random.SeedSequence([seed, _STREAM_VARIANT, index, variant])
        generators.append(np.random.default_rng(sequence))
    return generators


@contextlib.contextmanager
def training_compute(model, config, device: torch.device) -> Iterator[PrefixStore | None]:
    """Within the block, `model` trains with the run's prefix cache (when it has a frozen
    prefix and the config gives the cache memory or disk) and activation checkpointing;
    both are undone, and the cache's files removed, on exit. Yields the store (or None)."""
    store = None
    folder = None
    memory = config.prefix_cache_mb * 2**20
    disk = config.prefix_cache_disk_mb * 2**20
    if has_frozen_prefix(model) and (memory or disk):
        if disk:
            folder = tempfile.mkdtemp(prefix="clip-guided-sam-prefix-")
        store = PrefixStore(memory, folder, disk)
    previous = model.prefix_cache, model.activation_checkpointing
    model.prefix_cache = store
    model.activation_checkpointing = uses_checkpointing(
        config.activation_checkpointing, model, device, config.batch_size
    )
    try:
        yield store
    finally:
        model.prefix_cache, model.activation_checkpointing = previous
        if store is not None:
            store.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
