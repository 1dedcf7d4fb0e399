"""Batch outputs say which model made them: the report (JSON and CSV) and every label file."""

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.data.datasets import Sample
from napari_clip_guided_sam.data.label_writer import label_provenance, write_label_tiff
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_batch
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import TrainingConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    image = np.zeros((40, 48, 3), np.uint8)
    image[10:20, 10:20] = 220
    mask = image[..., 0] > 0
    config = TrainingConfig(
        epochs=1, max_steps=1, output_dir=str(folder), device="cpu", precision="fp32"
    )
    for _ in train(build_model("tiny"), [Sample(image, mask, "nucleus", "a")], None, config):
        pass
    return folder / "last.safetensors"


def _image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(
        folder / "a.tif", np.random.default_rng(0).integers(0, 255, (40, 48), np.uint8)
    )
    tifffile.imwrite(
        folder / "b.ome.tif", np.zeros((2, 40, 48), np.uint16), metadata={"axes": "ZYX"}
    )
    return folder


@pytest.mark.parametrize("fine_tuned", [False, True], ids=["zero-shot", "fine-tuned"])
def test_report_and_label_files_record_the_model(tmp_path, checkpoint, fine_tuned):
    predictor = Predictor.from_preset(
        "tiny", checkpoint if fine_tuned else None, device="cpu", precision="fp32"
    )
    output = tmp_path / "out"
    list(segment_batch(predictor, _image_folder(tmp_path), output, SegmentOptions(("nucleus",))))
    adapters = "fine-tuned adapters" if fine_tuned else "zero-shot (no fine-tuned adapters)"

    document = json.loads((output / "segment_report.json").read_text())
    model = document["model"]
    assert model["preset"] == "tiny" and model["adapters"] == adapters
    assert model["checkpoint"] == (str(checkpoint) if fine_tuned else None)
    assert model["classes"] == (["nucleus"] if fine_tuned else [])
    assert model["base_weights"]["sam"]["kind"] == "random"
    with open(output / "segment_report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(adapters in row["model"] and "preset tiny" in row["model"] for row in rows)

    for name in ("a_labels.tif", "b_labels.ome.tif"):  # ImageJ and OME-TIFF metadata
        recorded = label_provenance(output / name)
        assert recorded is not None and recorded["adapters"] == adapters
        assert recorded["preset"] == "tiny" and "card" not in recorded
        assert recorded["checkpoint"] == model["checkpoint"]


def test_label_files_in_tifffiles_own_metadata_record_the_model(tmp_path):
    """uint32 labels (many instances) are written with tifffile's JSON metadata."""
    provenance = {"preset": "tiny", "adapters": "fine-tuned adapters", "checkpoint": "x"}
    path = tmp_path / "many.tif"
    labels = np.arange(40 * 48, dtype=np.uint32).reshape(40, 48) * 100_000
    write_label_tiff(path, labels, "YX", {}, None, False, provenance)
    assert label_provenance(path) == provenance
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, labels)
    assert label_provenance(plain) is None
