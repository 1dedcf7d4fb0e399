"""The segment and batch widgets' Model box says which presets have random weights."""

import pytest

from napari_clip_guided_sam._widgets._model_choice import ModelChoice


@pytest.mark.parametrize(
    "preset, random_weights", [("tiny", True), ("tiny_448", True), ("paper", False)]
)
def test_the_model_box_says_when_a_preset_has_random_weights(qtbot, preset, random_weights):
    choice = ModelChoice()
    qtbot.addWidget(choice)
    choice.preset_combo.setCurrentText(preset)
    summary = choice.summary.text()
    assert summary.startswith("Zero-shot")
    assert ("random weights" in summary) == random_weights
    assert (f"'{preset}'" in summary) == random_weights
