"""Prompts for SAM derived from the similarity map or from ground truth.

See docs/architecture.md, "Prompts".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# One CPU generator for every pair in turn, or one per pair: training draws each example's
# points from its own generator, so an example gets the same points whichever batch (or
# process) it is in (docs/architecture.md, "Training on several processes").
Generators = torch.Generator | Sequence[torch.Generator]


def pair_generators(generator: Generators, pairs: int) -> Sequence[torch.Generator]:
    """The generator of each of `pairs` pairs."""
    if isinstance(generator, torch.Generator):
        return [generator] * pairs
    if len(generator) != pairs:
        raise ValueError(f"{len(generator)} generators for {pairs} masks; give one per mask.")
    return generator


def prompt_mask(similarity_map: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary prompt mask M = map > tau: [P, S, S] float -> [P, S, S] bool."""
    return similarity_map > threshold


def dense_prompt(
    similarity_map: torch.Tensor, size: int, threshold: float, scale: float
) -> torch.Tensor:
    """SAM's `masks` prompt: the map resized to `size`, thresholded to a hard 0/scale map.

    similarity_map: [P, S, S] -> [P, 1, size, size]. Pixels near tau may flip on tiny
    numeric differences; that is inherent to the hard threshold the method uses.
    """
    resized = F.interpolate(
        similarity_map[:, None].float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return (resized > threshold).float() * scale


def _flat_to_xy(flat_index: torch.Tensor, width: int) -> torch.Tensor:
    """Row-major flat pixel indices [n] -> integer (x, y) coordinates [n, 2] as float."""
    return torch.stack([flat_index % width, flat_index // width], dim=-1).float()


def _draw(candidates: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` draws with replacement from a 1D tensor of candidates."""
    picks = torch.randint(len(candidates), (count,), generator=generator)
    return candidates[picks.to(candidates.device)]


def sample_points_from_map(
    similarity_map: torch.Tensor,
    threshold: float,
    n_positive: int,
    generator: Generators,
    n_negative: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-only mode points: uniform draws (with replacement) from the prompt mask.

    similarity_map: [P, S, S] in [0, 1]. Positives come from map > tau (the top-n pixels
    when that mask is empty), negatives from map < 1 - tau (the bottom-n when empty).
    `generator`: a CPU generator (or one per pair); each pair draws positives, then
    negatives, in order.
    Returns coords [P, n, 2] (x, y) in the map's frame and labels [P, n] (1 / 0).
    """
    pairs, _, width = similarity_map.shape
    coords, labels = [], []
    generators = pair_generators(generator, pairs)
    for flat, generator in zip(similarity_map.reshape(pairs, -1), generators, strict=True):
        positives = _choose(flat > threshold, flat, n_positive, generator, largest=True)
        points = [_flat_to_xy(positives, width)]
        point_labels = [torch.ones(n_positive, device=flat.device)]
        if n_negative:
            negatives = _choose(flat < 1 - threshold, flat, n_negative, generator, largest=False)
            points.append(_flat_to_xy(negatives, width))
            point_labels.append(torch.zeros(n_negative, device=flat.device))
        coords.append(torch.cat(points))
        labels.append(torch.cat(point_labels))
    return torch.stack(coords), torch.stack(labels).long()


def _choose(
    inside: torch.Tensor,
    scores: torch.Tensor,
    count: int,
    generator: torch.Generator,
    largest: bool,
) -> torch.Tensor:
    candidates = torch.nonzero(inside).flatten()
    if len(candidates) == 0:
        return torch.topk(scores, count, largest=largest).indices
    return _draw(candidates, count, generator)


def sample_points_from_masks(
    masks: torch.Tensor, n_points: int, generator: Generators
) -> tuple[torch.Tensor, torch.Tensor]:
    """Manual-mode training points: `n_points` random foreground pixels of each GT mask.

    masks: [P, H, W] bool in the SAM input frame. An empty mask gives random background
    points labelled negative, so the model also learns to return nothing. `generator`: a
    CPU generator (or one per mask).
    Returns coords [P, n, 2] (x, y) and labels [P, n].
    """
    pairs, _, width = masks.shape
    coords, labels = [], []
    generators = pair_generators(generator, pairs)
    for flat, generator in zip(masks.reshape(pairs, -1), generators, strict=True):
        foreground = torch.nonzero(flat).flatten()
        is_empty = len(foreground) == 0
        candidates = torch.arange(flat.numel(), device=flat.device) if is_empty else foreground
        coords.append(_flat_to_xy(_draw(candidates, n_points, generator), width))
        labels.append(torch.full((n_points,), 0 if is_empty else 1, device=flat.device))
    return torch.stack(coords), torch.stack(labels).long()
