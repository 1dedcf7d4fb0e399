"""Training that goes wrong: divergence, bad resume state, unusable samples (tiny preset).

Defect 2 of issue 9: a run whose loss became NaN exited 0 and saved a checkpoint of NaN
tensors over the good one. A non-finite loss now stops the run with a message that names the
learning rate, and no checkpoint is ever written from weights that are not finite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_clip_guided_sam.data.datasets import Sample
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import CheckpointEvent, StepEvent, TrainingConfig, train
from napari_clip_guided_sam.training.events import TrainingDivergedError

from .helpers import (
    assert_unchanged,
    bright_square_image,
    check_user_error,
    run_cli,
    snapshot,
    square_labels,
    train_args,
    write_pairs,
)

CPU = {"device": "cpu", "precision": "fp32"}


def samples(count=2, size=(40, 48)):
    return [
        Sample(bright_square_image(*size, seed=s), square_labels(*size) > 0, "nucleus", f"s{s}")
        for s in range(count)
    ]


def poison(model) -> None:
    """What a diverging step does: the trainable weights become NaN."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.fill_(float("nan"))


def test_a_nan_loss_stops_the_run_and_keeps_the_good_checkpoint(tmp_path):
    model = build_model("tiny")
    config = TrainingConfig(epochs=5, checkpoint_every=1, output_dir=str(tmp_path), **CPU)
    events = train(model, samples(3), None, config)
    for event in events:
        if isinstance(event, CheckpointEvent):
            break
    before = snapshot(tmp_path)
    poison(model)
    with pytest.raises(TrainingDivergedError) as raised:
        for _ in events:
            pass
    message = str(raised.value)
    assert "the loss became nan" in message and "learning rate is probably too high" in message
    assert "lr 5e-05" in message and "(step 1) are kept" in message
    assert_unchanged(before)


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    model = build_model("tiny")
    config = TrainingConfig(epochs=1, checkpoint_every=1, output_dir=str(tmp_path), **CPU)
    events = train(model, samples(3), None, config)
    for event in events:
        if isinstance(event, StepEvent):
            break  # the step is done; its checkpoint is written after this event
    poison(model)
    with pytest.raises(TrainingDivergedError, match="no longer finite"):
        for _ in events:
            pass
    assert not (tmp_path / "last.safetensors").exists()


def test_resume_without_a_state_says_what_is_needed(tmp_path):
    images, labels = write_pairs(tmp_path, count=1)
    result = run_cli(
        *train_args(images, labels, tmp_path / "run"),
        "--resume",
    )
    check_user_error(result, 1, "Cannot resume", "state file")


def test_resume_from_a_damaged_state_is_one_clear_line(tmp_path):
    images, labels = write_pairs(tmp_path, count=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.state.safetensors").write_bytes(b"\x00" * 64)
    result = run_cli(
        *train_args(images, labels, run),
        "--resume",
    )
    check_user_error(result, 1, "not a readable training state")


def test_images_below_the_minimum_side_stop_training_naming_the_sample():
    model = build_model("tiny")
    small = [Sample(np.zeros((8, 40, 3), np.uint8), np.zeros((8, 40), bool), "nucleus", "a.png")]
    with pytest.raises(ValueError, match=r"a\.png.*too small"):
        for _ in train(model, small, None, TrainingConfig(epochs=1, **CPU)):
            pass


def test_a_reserved_class_name_stops_training_before_any_step():
    model = build_model("tiny")
    data = [Sample(bright_square_image(), square_labels() > 0, "background", "a.png")]
    with pytest.raises(ValueError, match="label 0 of every output is the background"):
        next(train(model, data, None, TrainingConfig(epochs=1, **CPU)))


def test_training_where_no_pair_is_usable_names_every_reason(tmp_path):
    images, labels = write_pairs(tmp_path, count=1, labels=np.zeros((10, 10), np.uint8))
    result = run_cli(
        *train_args(images, labels, tmp_path / "run"),
    )
    check_user_error(result, 1, "no usable image/label pair", "shape mismatch")


def test_a_validation_fraction_never_leaves_nothing_to_train(tmp_path):
    images, labels = write_pairs(tmp_path, count=1)
    output = tmp_path / "run"
    result = run_cli(
        *train_args(images, labels, output, "--val-fraction", "0.9", "--max-steps", "1")
    )
    assert result.code == 0, result.err
    assert "1 for training, 0 for validation" in result.out
