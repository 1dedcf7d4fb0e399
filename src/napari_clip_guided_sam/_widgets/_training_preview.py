"""Preview a training checkpoint: segment the slice on screen into '<image> preview'.

The model is the viewer's shared one: it stays loaded between previews and is reloaded when
the checkpoint file changes (training writes a new one every epoch).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels

from ..inference.predictions import Prediction
from ..inference.session import PredictorSession, PredictorSettings
from ._common import JobPanel, Progress
from ._layers import ImageGeometry, labels_output, write_labels_slice


class CheckpointPreview:
    """Runs previews of a checkpoint in a `JobPanel`, keeping the model between runs."""

    def __init__(self, jobs: JobPanel, session: PredictorSession):
        self.jobs = jobs
        self.session = session

    def start(self, viewer, image: Image, settings: PredictorSettings) -> bool:
        """Segment the slice of `image` shown in `viewer`; False if a preview is running."""
        geometry = ImageGeometry.of(image)
        index = geometry.current_index(image, viewer.dims.point)
        rgb = geometry.slice_rgb(image, index)

        def show(prediction: Prediction) -> None:
            write_labels_slice(preview_layer(viewer, image, geometry), index, prediction)

        return self.jobs.start(preview_job, self.session, settings, rgb, on_event=show)


def preview_job(
    session: PredictorSession, settings: PredictorSettings, rgb: np.ndarray
) -> Generator[Progress | Prediction, None, None]:
    """Segment one uint8 RGB [H, W, 3] slice with every class the checkpoint knows."""
    if not session.is_loaded(settings):
        yield Progress(f"Loading {Path(settings.checkpoint).name}…")
    predictor = session.predictor(settings)
    names = predictor.closed_set_classes
    if not names:
        raise ValueError("The checkpoint holds no class names to preview.")
    yield Progress("Segmenting the current slice…")
    yield predictor.segment(rgb, names)
    yield Progress("Preview done.", 1, 1)


def preview_layer(viewer, image: Image, geometry: ImageGeometry) -> Labels:
    """The plugin's '<image> preview' labels layer (created empty; never a user's layer)."""
    return labels_output(viewer, image, geometry, role="preview")
