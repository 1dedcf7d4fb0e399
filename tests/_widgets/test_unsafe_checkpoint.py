"""A TorchScript file chosen as a checkpoint in the segment widget never runs its code."""

import numpy as np

from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._segment import SegmentWidget

TIMEOUT_MS = 60_000


def test_a_torchscript_checkpoint_is_refused_without_running(
    make_napari_viewer, qtbot, monkeypatch, marker_archive
):
    archive, marker = marker_archive
    errors = []
    monkeypatch.setattr(_common, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    widget.classes_edit.setText("nucleus")
    widget.checkpoint_edit.setText(str(archive))
    assert widget.segment_current_slice()  # the file exists; loading it fails in the worker
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert len(errors) == 1 and "not a readable checkpoint" in errors[0]
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert not marker.exists()
