"""The segment widget's jobs, run in a napari worker: segmenting the requested slices, and
precomputing their embeddings into the on-disk store. Each takes a `SegmentRequest`
gathered and checked on the GUI thread (`_segment.SegmentWidget`) and yields progress,
notices and results for the GUI thread to show and write."""

from __future__ import annotations

import warnings
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image

from ..inference.batch.precompute import precompute_slices
from ..inference.embedding_store import EmbeddingStore
from ..inference.predictions import Prediction
from ..inference.session import PredictorSession, PredictorSettings
from ..inference.tiles import TilingConfig
from ._common import Notice, Progress
from ._layers import ImageGeometry
from ._shared_model import loaded_predictor


@dataclass
class SegmentRequest:
    """Everything a segmentation job needs, gathered (and checked) on the GUI thread."""

    image: Image
    geometry: ImageGeometry
    channels: tuple[int, ...] | None
    class_names: list[str]
    settings: PredictorSettings
    guide_threshold: float
    n_points: int
    mask_threshold: float
    indices: list[tuple[int, ...]]
    first_rgb: np.ndarray  # the first slice, converted up front so bad input fails early
    points: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    embedding_store: EmbeddingStore | None = None  # the on-disk store, when it is on


@dataclass
class SliceResult:
    """One segmented slice, to be written into the output layers."""

    index: tuple[int, ...]
    prediction: Prediction


def segment_job(
    session: PredictorSession, request: SegmentRequest
) -> Generator[Progress | Notice | SliceResult, None, None]:
    """Load the model if needed, then segment each requested slice (cancellable per slice)."""
    predictor = yield from loaded_predictor(
        session, request.settings, request.guide_threshold, request.n_points
    )
    predictor.use_embedding_store(request.embedding_store)
    total = len(request.indices)
    for done, index in enumerate(request.indices):
        where = f" slice {done + 1}/{total}" if total > 1 else ""
        yield Progress(f"Segmenting{where}…", done, total)
        if done == 0:
            rgb = request.first_rgb
        else:
            rgb = request.geometry.slice_rgb(request.image, index, request.channels)
        xy, labels = request.points.get(index, (None, None))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prediction = predictor.segment(
                rgb, request.class_names, xy, labels, request.mask_threshold, tiling=request.tiling
            )
        for warning in caught:
            yield Notice(str(warning.message))
        yield SliceResult(index, prediction)
    yield Progress(f"Segmented {total} slice{'s' if total != 1 else ''}.", total, total)


def precompute_job(
    session: PredictorSession, request: SegmentRequest
) -> Generator[Progress | Notice, None, None]:
    """Load the model if needed, then compute every requested slice's embeddings into the
    on-disk store (`inference.batch.precompute`), cancellable per slice; warnings (a class
    outside the checkpoint's, a cache that cannot be written) become notices, once each."""
    predictor = yield from loaded_predictor(
        session, request.settings, request.guide_threshold, request.n_points
    )
    predictor.use_embedding_store(request.embedding_store)
    total = len(request.indices)
    rgbs = (
        request.geometry.slice_rgb(request.image, index, request.channels)
        for index in request.indices
    )
    steps = precompute_slices(predictor, rgbs, total, request.class_names, request.image.name)
    shown: set[str] = set()
    yield Progress(f"Precomputing embeddings: 0/{total} slices…", 0, total)
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            event = next(steps, None)
        for message in dict.fromkeys(str(w.message) for w in caught):
            if message not in shown:
                shown.add(message)
                yield Notice(message)
        if event is None:
            break
        done = event.index + 1
        yield Progress(f"Precomputing embeddings: {done}/{total} slices…", done, total)
    yield Progress(
        f"Precomputed {total} slice{'s' if total != 1 else ''}: revisits need only the decoder.",
        total,
        total,
    )
