"""The fault catalogue's cases that reach the widgets: each becomes an error notification,
napari keeps running, and the widget works again right after (tiny preset, real viewer).

The compute-side checks the widgets rely on (image size, class names, clicks, checkpoints,
training settings, the output-folder lock) raise clear ValueErrors/OSErrors; these tests
drive them through the real widgets. A TorchScript checkpoint in the segment widget is
`test_unsafe_checkpoint.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from napari_clip_guided_sam._locking import output_lock
from napari_clip_guided_sam._widgets._segment import SegmentWidget
from napari_clip_guided_sam._widgets.batch_commands import segment_folder_command
from napari_clip_guided_sam._widgets.training_widget import TrainingWidget
from napari_clip_guided_sam.data.datasets import Sample
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import TrainingConfig, train

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny checkpoint trained for one step (class "nucleus")."""
    folder = tmp_path_factory.mktemp("run")
    image = np.zeros((40, 48, 3), np.uint8)
    image[10:20, 10:24] = 220
    config = TrainingConfig(
        epochs=1, max_steps=1, output_dir=str(folder), device="cpu", precision="fp32"
    )
    sample = Sample(image, image[..., 0] > 0, "nucleus", "a")
    for _ in train(build_model("tiny"), [sample], None, config):
        pass
    return folder / "last.safetensors"


def _edited(source, target, header=None, nan=False):
    with safe_open(str(source), framework="pt") as handle:
        metadata = {**handle.metadata(), **(header or {})}
    tensors = load_file(str(source))
    if nan:
        name = next(iter(tensors))
        tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.fixture
def segment_widget(viewer, qtbot):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    yield widget
    if widget.jobs.running:
        widget.jobs.cancel()
        qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def _segment(qtbot, widget) -> None:
    """Press "Segment current slice" and wait; a refusal before any job is fine too."""
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)


def _still_works(qtbot, viewer, widget) -> None:
    """napari is alive and the widget segments a good image right after the fault."""
    viewer.layers.clear()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8), name="ok")
    widget.checkpoint_edit.setText("")
    widget.classes_edit.setText("nucleus")
    _segment(qtbot, widget)
    assert "ok labels" in [layer.name for layer in viewer.layers]


def _label_layers(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.name.endswith("labels")]


BAD_INPUTS = [  # image shape, class names, what the notification says
    ((8, 64), "nucleus", "too small"),
    ((1, 1), "nucleus", "too small"),
    ((64, 64), "background", "label 0 of every output is the background"),
    ((64, 64), "x" * 120, "at most 100"),
]


def test_bad_input_to_the_segment_widget_is_a_notification(viewer, segment_widget, qtbot, errors):
    for shape, classes, message in BAD_INPUTS:
        viewer.layers.clear()
        viewer.add_image(np.full(shape, 100, np.uint8), name="bad")
        segment_widget.classes_edit.setText(classes)
        _segment(qtbot, segment_widget)
        assert errors and message in errors[-1], (shape, classes, errors)
        assert _label_layers(viewer) == []
    _still_works(qtbot, viewer, segment_widget)


BAD_CHECKPOINTS = [  # how the good checkpoint is damaged, what the notification says
    ({"header": {"base_weights": "random:abc", "base": "null"}}, "damaged header"),
    ({"nan": True}, "not finite numbers"),
    ({"header": {"format": "other"}}, "weights import"),
]


def test_a_bad_checkpoint_in_the_segment_widget_is_a_notification(
    viewer, segment_widget, qtbot, errors, checkpoint, tmp_path
):
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    segment_widget.classes_edit.setText("nucleus")
    for index, (edit, message) in enumerate(BAD_CHECKPOINTS):
        bad = _edited(checkpoint, tmp_path / f"bad{index}.safetensors", **edit)
        segment_widget.checkpoint_edit.setText(str(bad))
        _segment(qtbot, segment_widget)
        assert errors and message in errors[-1], (edit, errors)
        assert _label_layers(viewer) == []
    _still_works(qtbot, viewer, segment_widget)


def test_missing_base_weights_are_a_notification_listing_them(
    viewer, segment_widget, qtbot, errors
):
    """The paper preset with an empty weights folder and no network."""
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    segment_widget.preset_combo.setCurrentText("paper")
    segment_widget.classes_edit.setText("nucleus")
    _segment(qtbot, segment_widget)
    assert errors and "Base weights missing" in errors[-1]
    assert "sam_vit_b_01ec64.pth" in errors[-1]
    segment_widget.preset_combo.setCurrentText("tiny")
    _still_works(qtbot, viewer, segment_widget)


def test_a_folder_run_into_a_busy_folder_is_a_notification(viewer, qtbot, errors, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(images / "a.png")
    panel = segment_folder_command(viewer)
    panel.classes.setText("nucleus")
    panel.preset.setCurrentText("tiny")
    panel.device.setCurrentText("cpu")
    panel.output_dir.setText(str(tmp_path / "out"))
    panel.input_dir.setText(str(images))
    with output_lock(tmp_path / "out", "another batch"):
        assert panel.run()
        qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)
    assert errors and "another run is writing to" in errors[-1] and "another batch" in errors[-1]
    assert not (tmp_path / "out" / "a_labels.tif").exists()
    assert panel.run()  # the folder is free again: the same panel finishes
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT_MS)
    assert (tmp_path / "out" / "a_labels.tif").is_file()


@pytest.mark.parametrize(
    "value, message", [("nan", "learning rate"), ("1e6", "from 0 to 1"), ("inf", "learning rate")]
)
def test_a_bad_learning_rate_in_the_training_widget_is_a_notification(
    viewer, errors, tmp_path, value, message
):
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.settings.preset_combo.setCurrentText("tiny")
    widget.settings.output_edit.setText(str(tmp_path / "run"))
    viewer.add_image(np.zeros((2, 64, 64), np.uint8), name="cells")
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 10:30, 10:30] = 1
    viewer.add_labels(labels, name="cells labels")
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.lr_edit.setText(value)
    widget.run_panel.train_button.click()
    assert not widget.running and widget.run is None
    assert errors and message in errors[-1].lower()
    assert not (tmp_path / "run").exists()
