"""Precomputing a stack's embeddings into the on-disk store (`inference.embedding_store`).

Each slice goes through the same path as segmentation (`stack.iter_slice_rgb`, so its
content hash matches the one a later segmentation computes), then the predictor's CLIP
tokens and class embeddings are computed, or found, and written to its store; nothing is
decoded. Memory stays flat: the predictor's memory caches are cleared after every slice.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ...data.image import ImageData
from ...data.reader import read_image_lazy
from ...data.slicing import n_slices
from .options import SegmentOptions, SlicePredictor, with_classes
from .stack import SliceDone, iter_slice_rgb

__all__ = ["EmbeddingPredictor", "precompute_slices", "precompute_stack"]


class EmbeddingPredictor(SlicePredictor, Protocol):
    """What precomputing needs of a predictor (`inference.predictor.Predictor`)."""

    def embed(self, rgb: np.ndarray, class_names: list[str]) -> None:
        """Compute (or find) an image's tokens and class embeddings, without decoding."""
        ...


def precompute_stack(
    predictor: EmbeddingPredictor, image: ImageData | str | Path, options: SegmentOptions
) -> Generator[SliceDone, None, int]:
    """Compute the embeddings of every slice of ``image`` for ``options.class_names``
    (empty: the checkpoint's classes) with ``options.normalize``, as segmenting would.

    The predictor must have an embedding store (`Predictor.use_embedding_store`), else the
    work is lost. Yields :class:`SliceDone` after each slice; returns the slice count.
    """
    if not isinstance(image, ImageData):
        image = read_image_lazy(image)
    options = with_classes(predictor, options)
    rgbs = (rgb for _, rgb in iter_slice_rgb(image, options.normalize))
    label = image.path or image.name
    return (
        yield from precompute_slices(predictor, rgbs, n_slices(image), options.class_names, label)
    )


def precompute_slices(
    predictor: EmbeddingPredictor,
    rgbs: Iterable[np.ndarray],
    total: int,
    class_names: Sequence[str],
    label: Path | str,
) -> Generator[SliceDone, None, int]:
    """The loop of :func:`precompute_stack` over the model inputs of the slices, read
    lazily (the segment widget gives a layer's slices this way)."""
    done = 0
    for flat, rgb in enumerate(rgbs):
        try:
            predictor.embed(rgb, list(class_names))
        finally:
            predictor.clear_cache()
        done += 1
        yield SliceDone(label, flat, total)
    return done
