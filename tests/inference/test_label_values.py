"""A multi-class checkpoint segments any subset of its classes, each with the label value it
had in the training labels; batch reports record the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_batch
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import TrainingConfig, train


@pytest.fixture(scope="module")
def four_class_checkpoint(tmp_path_factory):
    """A tiny checkpoint trained one step on a fully labelled map (0-3, 255 unannotated)."""
    labels = np.zeros((32, 32), np.uint8)
    labels[:, 16:], labels[16:, :16], labels[20:26, 20:26], labels[:3] = 1, 2, 3, 255
    image = np.repeat((labels[..., None] * 50).astype(np.uint8), 3, axis=-1)
    class_map = ClassMap(
        {0: "pore", 1: "clay", 2: "quartz", 3: "pyrite"}, background=False, ignore_index=255
    )
    folder = tmp_path_factory.mktemp("run")
    config = TrainingConfig(
        max_steps=1, device="cpu", precision="fp32", output_dir=str(folder), lr=1e-3
    )
    dataset = SliceDataset([(image, labels)], class_map)
    for _ in train(build_model("tiny", seed=0), dataset, None, config):
        pass
    return folder / "last.safetensors", image


def test_any_subset_keeps_the_checkpoints_label_values(four_class_checkpoint):
    path, image = four_class_checkpoint
    predictor = Predictor.from_checkpoint(path, "cpu", "fp32")
    table = predictor.label_table_for(["pyrite", "clay"])
    assert table.values == {"pyrite": 3, "clay": 1} and table.unlabelled == 255
    # threshold 0: every pixel takes its most probable class
    alone = predictor.segment(image, ["pyrite"], threshold=0.0)
    assert set(np.unique(alone.labels)) == {3}
    assert alone.label_table.values == {"pyrite": 3}
    pair = predictor.segment(image, ["pyrite", "clay"], threshold=0.0)
    assert set(np.unique(pair.labels)) <= {1, 3}
    nothing = predictor.segment(image, ["quartz"], threshold=0.999999)
    assert set(np.unique(nothing.labels)) <= {2, 255}  # unclaimed pixels: the ignore value
    with pytest.warns(UserWarning, match="not among the classes"):
        other = predictor.segment(image, ["quartz", "nucleus"], threshold=0.0)
    assert other.label_table.values == {"quartz": 1, "nucleus": 2}  # by position, as before


def test_batch_label_files_and_report_carry_the_values(four_class_checkpoint, tmp_path):
    path, image = four_class_checkpoint
    predictor = Predictor.from_checkpoint(path, "cpu", "fp32")
    source = tmp_path / "in"
    source.mkdir()
    tifffile.imwrite(source / "a.tif", image[..., 0])
    options = SegmentOptions(class_names=("pyrite",), threshold=0.0)
    for _ in segment_batch(predictor, source, tmp_path / "out", options):
        pass
    written = tifffile.imread(tmp_path / "out" / "a_labels.tif")
    assert set(np.unique(written)) == {3}
    report = json.loads((tmp_path / "out" / "segment_report.json").read_text())
    assert report["settings"]["label_table"] == {"values": {"pyrite": 3}, "unlabelled": 255}
