"""The GUI's predictor session: one model, reloaded only when its settings or file change."""

import os

import torch

from napari_clip_guided_sam.inference.session import PredictorSession, PredictorSettings
from napari_clip_guided_sam.model.checkpoint import save_checkpoint


def test_same_settings_reuse_the_model_and_a_rewritten_checkpoint_reloads(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "run.safetensors", class_names=[])
    settings = PredictorSettings("tiny", str(path), device="cpu", precision="fp32")
    session = PredictorSession()
    first = session.predictor(settings)
    assert session.predictor(settings) is first and session.is_loaded(settings)

    with torch.no_grad():
        features = tiny_model.text_features(["nucleus"])
    save_checkpoint(tiny_model, path, class_names=["nucleus"], text_features=features)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # even within one tick
    assert not session.is_loaded(settings)
    second = session.predictor(settings)
    assert second is not first and second.closed_set_classes == ["nucleus"]

    other = PredictorSettings("tiny", None, device="cpu", precision="fp32")
    assert not session.is_loaded(other) and session.predictor(other) is not second
