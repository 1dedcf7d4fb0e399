"""The background jobs of the segment widget's object workflow (generators of events, run
by the widget's `JobPanel`): the current objects' preview, every instance of a class on a
slice, and one object propagated through a stack. No Qt here."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..inference.objects import ObjectPrompt, instances_from_text
from ..inference.propagation import PropagationConfig, propagate
from ..inference.session import PredictorSession
from ._common import Progress
from ._shared_model import loaded_predictor

if TYPE_CHECKING:
    from ._segment_jobs import SegmentRequest


@dataclass
class ObjectRequest:
    """One slice's objects to segment: the checked slice request and their prompts."""

    slice: SegmentRequest
    class_name: str
    prompts: list[ObjectPrompt]
    text_guide: bool
    version: int  # of the prompts when they were read (a newer edit makes the preview stale)

    @property
    def index(self) -> tuple[int, ...]:
        return self.slice.indices[0]


@dataclass
class ObjectPreview:
    """The current objects of one slice, not yet committed."""

    image: str
    index: tuple[int, ...]
    class_name: str
    masks: np.ndarray  # bool [N, H, W]
    version: int


def preview_job(session: PredictorSession, request: ObjectRequest) -> Generator:
    """The masks of the objects of one slice (decoder only once the slice is encoded)."""
    base = request.slice
    predictor = yield from loaded_predictor(
        session, base.settings, base.guide_threshold, base.n_points
    )
    yield Progress("Segmenting the object…")
    prediction = predictor.segment_objects(
        base.first_rgb,
        request.class_name,
        request.prompts,
        text_guide=request.text_guide,
        threshold=base.mask_threshold,
        tiling=base.tiling,
    )
    yield ObjectPreview(
        base.image.name, request.index, request.class_name, prediction.masks, request.version
    )


def segment_all_job(session: PredictorSession, request: SegmentRequest, class_name: str):
    """Every instance of one class on the slice of `request`."""
    predictor = yield from loaded_predictor(
        session, request.settings, request.guide_threshold, request.n_points
    )
    yield Progress(f"Segmenting all {class_name}…")
    yield instances_from_text(
        predictor, request.first_rgb, class_name, threshold=request.mask_threshold
    )


def propagate_job(
    session: PredictorSession,
    request: SegmentRequest,
    mask: np.ndarray,
    class_name: str,
    config: PropagationConfig,
) -> Generator:
    """Follow the object of `mask` (on the slice of `request`) along the innermost leading
    axis; yields each `PropagationStep`, then the `PropagationResult`."""
    predictor = yield from loaded_predictor(
        session, request.settings, request.guide_threshold, request.n_points
    )
    *outer, start = request.indices[0]
    geometry = request.geometry

    def slice_rgb(position: int) -> np.ndarray:
        index = (*outer, position)
        return geometry.slice_rgb(request.image, index, request.channels)

    steps = propagate(
        predictor, slice_rgb, geometry.leading_shape[-1], start, mask, class_name, config
    )
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            yield stop.value
            return
        yield Progress(f"Propagating: slice {step.position}…", step.done, step.total)
        yield step
