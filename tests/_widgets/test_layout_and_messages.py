"""Every dock widget fits a laptop screen, explains each control, remembers its Advanced
section and keeps the last error readable in its panel."""

import os

import numpy as np
import pytest
import torch
from qtpy.QtCore import QPoint
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QListWidget,
    QWidget,
)

from napari_clip_guided_sam._widgets import _common
from napari_clip_guided_sam._widgets._messages import ERROR
from napari_clip_guided_sam._widgets._panels import MAX_DOCK_WIDTH
from napari_clip_guided_sam._widgets._segment import SegmentWidget
from napari_clip_guided_sam._widgets.batch_commands import (
    segment_folder_command,
    segment_stack_command,
)
from napari_clip_guided_sam._widgets.training_widget import TrainingWidget
from napari_clip_guided_sam.model.card import make_card, validation_summary
from napari_clip_guided_sam.model.checkpoint import save_checkpoint
from napari_clip_guided_sam.model.factory import build_model

PLUGIN = "napari-clip-guided-sam"
SEGMENT, TRAIN = "Segment (text + clicks)", "Train (fine-tune)"
SCREEN = (1280, 800)
MAX_DOCK_HEIGHT = 700
TIMEOUT_MS = 60_000
LONG_ERROR = "Missing:\n  url: https://example.org/" + "a" * 300 + "\n  sha256: " + "0" * 64
INPUTS = (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QListWidget)


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    return shown


def _all_widgets(viewer):
    """The plugin's four dock widgets, docked as napari docks them (tabbed on the right)."""
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT)
    _, training = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN, tabify=True)
    return {
        "segment": segment,
        "training": training,
        "stack": segment_stack_command(viewer),
        "folder": segment_folder_command(viewer),
    }


def _primary_actions(name, widget):
    if name == "segment":
        objects = widget.objects
        return [
            widget.segment_button,
            widget.stack_button,
            widget.points_button,
            objects.commit_button,
            objects.propagate_button,
        ]
    if name == "training":
        run = widget.run_panel
        return [run.train_button, run.cancel_button, widget.load_button]
    return [widget.run_button]


def _visible_without_scrolling(widget, button) -> bool:
    bottom = button.mapTo(widget.content, QPoint(0, button.height())).y()
    return button.isVisibleTo(widget) and bottom <= widget.scroll.viewport().height()


def _show_in_screen(qtbot, widget):
    window = widget.window()
    window.resize(*SCREEN)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SCREEN, timeout=5000)
    dock = widget.parent()
    dock.show()
    dock.raise_()
    qtbot.wait(50)
    return window


def test_every_dock_widget_fits_a_1280x800_window_with_its_actions_visible(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer(show=True)
    widgets = _all_widgets(viewer)
    for name, widget in widgets.items():
        hint = widget.minimumSizeHint()
        assert hint.height() <= MAX_DOCK_HEIGHT and hint.width() <= MAX_DOCK_WIDTH, name
        assert widget.content.minimumSizeHint().width() <= MAX_DOCK_WIDTH, name
        window = _show_in_screen(qtbot, widget)
        assert (window.width(), window.height()) == SCREEN  # no dock makes it grow
        for button in _primary_actions(name, widget):
            assert _visible_without_scrolling(widget, button), (name, button.text())
        widget.messages.show_error(LONG_ERROR)  # long unbreakable words wrap, too
        qtbot.wait(50)
        assert not widget.scroll.horizontalScrollBar().isVisible(), name
        for button in _primary_actions(name, widget):
            assert _visible_without_scrolling(widget, button), (name, button.text())

    training = widgets["training"]  # mid-run: the plot, the times and a note are shown
    training.run_panel.show_start("Starting", time_budget_s=120)
    training.run_panel._set(training.run_panel.time_label, "Elapsed 3 s")
    training.messages.show_note("No validation: 1 annotated slice is too few.")
    _show_in_screen(qtbot, training)
    for button in _primary_actions("training", training):
        assert _visible_without_scrolling(training, button), button.text()


def test_every_input_control_has_a_tooltip(make_napari_viewer):
    viewer = make_napari_viewer()
    for name, widget in _all_widgets(viewer).items():
        missing = []
        for child in widget.findChildren(QWidget):
            if not isinstance(child, INPUTS):
                continue
            if isinstance(child, QLineEdit) and isinstance(
                child.parent(), QAbstractSpinBox | QComboBox
            ):
                continue  # the text field inside a spin box or combo box
            if not child.toolTip().strip():
                missing.append(getattr(child, "text", lambda c=child: type(c).__name__)())
        assert missing == [], name


@pytest.mark.parametrize(
    "make",
    [
        lambda viewer: SegmentWidget(viewer),
        lambda viewer: TrainingWidget(viewer),
        segment_stack_command,
        segment_folder_command,
    ],
    ids=["segment", "training", "stack", "folder"],
)
def test_advanced_is_collapsed_by_default_and_remembered(make_napari_viewer, make):
    viewer = make_napari_viewer()
    widget = make(viewer)
    assert not widget.advanced.expanded and not widget.advanced.body.isVisibleTo(widget)
    widget.advanced.toggle.click()
    assert widget.advanced.body.isVisibleTo(widget)
    again = make(make_napari_viewer())
    assert again.advanced.expanded and again.advanced.body.isVisibleTo(again)
    again.advanced.toggle.click()
    assert not make(make_napari_viewer()).advanced.expanded


# ---------------------------------------------------------------------------- messages
def test_missing_weights_stay_in_the_panel_with_the_fix_and_a_tiny_switch(
    make_napari_viewer, qtbot, errors
):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.device_combo.setCurrentText("cpu")
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    widget.classes_edit.setText("nucleus")
    assert widget.preset_combo.currentText() == "paper"
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)

    assert len(errors) == 1  # a notification for attention...
    message = widget.messages.message  # ...and the whole text kept in the panel
    assert widget.messages.kind == ERROR and widget.messages.isVisibleTo(widget)
    for needed in ("sam_vit_b_01ec64.pth", "sha256:", "url:", "clip-guided-sam weights fetch"):
        assert needed in message
    assert os.environ["CLIP_GUIDED_SAM_CACHE"] in message  # the folder to put them in
    assert widget.jobs.status.text().startswith("Failed: Base weights missing")
    widget.messages.details_button.click()
    assert "MissingWeightsError" in widget.messages.details.toPlainText()

    [remedy] = widget.messages._remedy_buttons
    assert "tiny" in remedy.text()
    remedy.click()
    assert widget.preset_combo.currentText() == "tiny" and not widget.messages.message
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert len(errors) == 1 and "cells labels" in viewer.layers


def test_an_input_error_stays_in_the_panel_until_the_next_action(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.preset_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    widget.segment_button.click()
    assert errors and "class name" in errors[0]
    assert widget.messages.message == errors[0]
    assert widget.messages.message  # still there while nothing else happens
    widget.classes_edit.setText("nucleus")
    widget.segment_button.click()
    assert not widget.messages.message  # the next action clears it
    qtbot.waitUntil(lambda: not widget.jobs.running, timeout=TIMEOUT_MS)
    assert widget.jobs.status.text() == "Done." and len(errors) == 1


# ---------------------------------------------------------------------------- the model box
def _checkpoint(tmp_path, with_scores=True):
    model = build_model("tiny", seed=0)
    model.fine_tuned = True
    features = torch.randn(1, model.guide.embed_dim)
    validation = validation_summary(
        {"miou": 0.625, "fg_iou": 0.5, "n_samples": 3}, ["nucleus"], 2, 8
    )
    card = make_card(
        model.config,
        model.base,
        model.adapter_state,
        ["nucleus"],
        True,
        validation=validation if with_scores else None,
    )
    return save_checkpoint(
        model,
        tmp_path / "nuclei.safetensors",
        class_names=["nucleus"],
        text_features=features,
        card=card,
    )


def test_the_model_box_says_zero_shot_or_shows_the_checkpoint_and_locks_its_preset(
    make_napari_viewer, tmp_path
):
    widget = SegmentWidget(make_napari_viewer())
    assert "zero-shot (no fine-tuned adapters)" in widget.model.summary.text().lower()
    assert widget.preset_combo.isEnabled() and not widget.model.card_button.isVisibleTo(widget)

    widget.load_checkpoint(_checkpoint(tmp_path))
    summary = widget.model.summary.text()
    assert "Fine-tuned adapters" in summary and "nucleus" in summary
    assert "nucleus mIoU 0.625" in summary
    assert widget.preset_combo.currentText() == "tiny" and not widget.preset_combo.isEnabled()
    assert widget.classes_edit.text() == "nucleus"
    widget.model.card_button.click()
    assert "held-out" in widget.model.card_text.toPlainText()
    assert widget.settings().checkpoint == str(tmp_path / "nuclei.safetensors")

    widget.checkpoint_edit.setText("")
    assert widget.preset_combo.isEnabled() and "Zero-shot" in widget.model.summary.text()
    widget.checkpoint_edit.setText(str(tmp_path / "missing.safetensors"))
    assert "Cannot use this checkpoint" in widget.model.summary.text()
    assert widget.preset_combo.isEnabled()


def test_a_checkpoint_sets_the_preset_and_classes_of_the_batch_panels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = _checkpoint(tmp_path, with_scores=False)
    for panel in (segment_stack_command(viewer), segment_folder_command(viewer)):
        panel.classes.setText("")
        panel.checkpoint.setText(str(path))
        assert panel.preset.currentText() == "tiny" and not panel.preset.isEnabled()
        assert panel.classes.text() == "nucleus"
        assert panel.settings.checkpoint == str(path)
        assert "Validation: none recorded" in panel.model.summary.text()


def test_own_sam_weights_reach_the_model_settings(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    own = tmp_path / "my_sam.pth"
    widget.sam_weights_edit.setText(str(own))
    assert widget.settings().sam_weights == str(own)
    viewer.add_image(np.zeros((64, 64), np.uint8), name="cells")
    widget.classes_edit.setText("nucleus")
    widget.segment_button.click()  # the file does not exist: refused before any work
    assert "SAM weights file not found" in widget.messages.message
    assert not widget.jobs.running
