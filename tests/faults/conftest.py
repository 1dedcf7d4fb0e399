"""The fault catalogue's fixtures: small data, one tiny checkpoint per session, a predictor."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import bright_square_image, square_labels, write_png


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint trained for one step (class "nucleus"), made once per session."""
    from napari_clip_guided_sam.data.datasets import Sample
    from napari_clip_guided_sam.model.factory import build_model
    from napari_clip_guided_sam.training import TrainingConfig, train

    folder = tmp_path_factory.mktemp("trained")
    samples = [
        Sample(bright_square_image(seed=s), square_labels() > 0, "nucleus", f"s{s}")
        for s in range(2)
    ]
    config = TrainingConfig(
        epochs=1, max_steps=1, output_dir=str(folder), device="cpu", precision="fp32"
    )
    for _ in train(build_model("tiny"), samples, None, config):
        pass
    return folder / "last.safetensors"


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder of two small PNG images."""
    folder = tmp_path / "images"
    write_png(folder / "a.png", seed=0)
    write_png(folder / "b.png", seed=1)
    return folder


@pytest.fixture(scope="session")
def predictor():
    from napari_clip_guided_sam.inference.predictor import Predictor

    return Predictor.from_preset("tiny", device="cpu", precision="fp32")
