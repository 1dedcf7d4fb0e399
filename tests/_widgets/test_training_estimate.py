"""The training widget's estimate, in a real viewer: the CPU-friendly preset is named as such,
and "Estimate time and memory" shows the time per epoch, total time and peak memory of the
run as set up before training, in the background, with errors in the message panel."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._training_estimate import CPU_FRIENDLY_PRESET
from napari_clip_guided_sam._widgets.training_widget import TrainingWidget

TIMEOUT_MS = 120_000


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    return shown


@pytest.fixture
def widget(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.settings.preset_combo.setCurrentText("tiny")
    widget.settings.device_combo.setCurrentText("cpu")
    widget.settings.output_edit.setText(str(tmp_path / "run"))
    return widget


def _add_annotated_stack(viewer, slices=4):
    rows, cols = np.mgrid[:64, :64]
    image = np.random.default_rng(0).integers(0, 40, (slices, 64, 64)).astype(np.uint8)
    labels = np.zeros(image.shape, np.uint8)
    for z in range(slices):
        disk = (rows - 20 - 6 * z) ** 2 + (cols - 30) ** 2 < 100
        image[z][disk] = 200
        labels[z][disk] = 1
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells labels")


def test_the_cpu_friendly_preset_is_offered_as_such(widget):
    combo = widget.settings.preset_combo
    index = combo.findText(CPU_FRIENDLY_PRESET)
    assert index >= 0
    assert "CPU-friendly" in combo.itemData(index, Qt.ItemDataRole.ToolTipRole)
    assert "CPU-friendly" in combo.toolTip()


def test_the_estimate_shows_time_and_memory_before_training(widget, qtbot, errors):
    _add_annotated_stack(widget.viewer)
    widget.sources.class_name_edit.setText("nucleus")
    widget.settings.epochs_spin.setValue(3)
    widget.settings.val_spin.setValue(0.25)
    box = widget.estimate_box
    qtbot.mouseClick(box.button, Qt.MouseButton.LeftButton)
    assert box.running and not box.button.isEnabled()
    qtbot.waitUntil(lambda: not box.running, timeout=TIMEOUT_MS)
    assert errors == [] and widget.messages.message == ""
    estimate = box.estimate
    assert estimate is not None and estimate.epochs == 3
    assert estimate.steps_per_epoch == 3  # 4 annotated slices, one kept to validate
    text = box.result_label.text()
    assert box.result_label.isVisibleTo(widget)
    assert "per epoch" in text and "peak memory about" in text and " GB" in text
    assert "3 epoch(s) of 3 step(s)" in text
    assert box.button.isEnabled() and widget.run is None  # nothing was trained
    assert not (widget.settings.output()).exists()

    widget.settings.preset_combo.setCurrentText(CPU_FRIENDLY_PRESET)  # another run
    assert box.estimate is None and not box.result_label.isVisibleTo(widget)


def test_an_estimate_without_annotations_says_why_in_the_panel(widget, qtbot, errors):
    widget.viewer.add_image(np.zeros((2, 64, 64), np.uint8), name="cells")
    widget.viewer.add_labels(np.zeros((2, 64, 64), np.uint8), name="cells labels")
    widget.sources.class_name_edit.setText("nucleus")
    qtbot.mouseClick(widget.estimate_box.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.estimate_box.running, timeout=TIMEOUT_MS)
    assert errors and "paint at least one object" in widget.messages.message
    assert widget.estimate_box.estimate is None
    assert not widget.estimate_box.result_label.isVisibleTo(widget)


def test_a_cancelled_estimate_shows_no_numbers(widget, qtbot, errors):
    _add_annotated_stack(widget.viewer)
    widget.sources.class_name_edit.setText("nucleus")
    box = widget.estimate_box
    assert box.start()
    box.cancel()
    qtbot.waitUntil(lambda: not box.running, timeout=TIMEOUT_MS)
    assert errors == [] and box.estimate is None
    assert not box.result_label.isVisibleTo(widget) and box.button.isEnabled()
    assert "Cancelled" in box.jobs.status.text()
