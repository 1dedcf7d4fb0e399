"""Propagating one object through a stack: one id, both directions, stops where it ends."""

import dataclasses

import numpy as np
import pytest

from napari_clip_guided_sam.inference.annotation import ObjectAnnotations
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.inference.propagation import (
    PropagationConfig,
    PropagationStep,
    continuing_pieces,
    mask_iou,
    prompts_from_mask,
    propagate,
)

from .conftest import DISK_SLICES, disk_image

# SAM's IoU head is not trained by fine-tuning: the tiny model's predictions are flat.
CONFIG = PropagationConfig(min_predicted_iou=0.0)


@pytest.fixture
def predictor(disk_model):
    return Predictor(disk_model, device="cpu", precision="fp32")


def run(events):
    steps = []
    while True:
        try:
            steps.append(next(events))
        except StopIteration as stop:
            return steps, stop.value


def test_a_drifting_disk_is_followed_both_ways_and_stops_where_it_ends(predictor, drifting_disk):
    images, masks = drifting_disk
    events = propagate(predictor, lambda z: images[z], len(images), 5, masks[5], "disk", CONFIG)
    steps, result = run(events)
    assert result.positions == list(DISK_SLICES)
    assert result.stopped == {1: "empty mask at slice 10", -1: "empty mask at slice 1"}
    for z in DISK_SLICES:
        assert mask_iou(result.masks[z], masks[z]) > 0.7, z
    assert [s.position for s in steps] == [6, 7, 8, 9, 10, 4, 3, 2, 1]
    assert [s.accepted for s in steps] == [True] * 4 + [False] + [True] * 3 + [False]
    assert all(isinstance(s, PropagationStep) for s in steps)
    assert steps[-1].done == 9 and steps[-1].total == 11

    labels = np.zeros(masks.shape, dtype=np.uint32)
    annotations = ObjectAnnotations(labels)
    change = annotations.commit("disk", {(z,): m for z, m in result.masks.items()})
    assert change.object_ids == [1] and annotations.classes == {1: "disk"}
    assert set(np.unique(labels)) == {0, 1}  # one id through the stack
    assert [z for z in range(len(labels)) if labels[z].any()] == list(DISK_SLICES)


def test_overlap_and_predicted_iou_thresholds_stop_propagation(predictor, drifting_disk):
    images, masks = drifting_disk
    strict = dataclasses.replace(CONFIG, min_overlap=0.99)  # consecutive disks overlap ~0.6
    _, result = run(propagate(predictor, lambda z: images[z], 12, 5, masks[5], "disk", strict))
    assert result.positions == [5]
    assert result.stopped[1].startswith("overlap 0.") and result.stopped[1].endswith("slice 6")

    trusting = dataclasses.replace(CONFIG, min_predicted_iou=0.99)
    _, result = run(propagate(predictor, lambda z: images[z], 12, 5, masks[5], "disk", trusting))
    assert result.positions == [5] and "predicted IoU" in result.stopped[-1]


def test_max_steps_and_the_ends_of_the_stack(predictor, drifting_disk):
    images, masks = drifting_disk
    config = dataclasses.replace(CONFIG, max_steps=2)
    _, result = run(propagate(predictor, lambda z: images[z], 12, 5, masks[5], "disk", config))
    assert result.positions == [3, 4, 5, 6, 7]
    assert result.stopped == {1: "2 slices done", -1: "2 slices done"}

    _, result = run(propagate(predictor, lambda z: images[z], 6, 5, masks[5], "disk", config))
    assert result.stopped[1] == "end of stack" and result.positions == [3, 4, 5]


def test_closing_the_generator_cancels_after_the_current_slice(predictor, drifting_disk):
    images, masks = drifting_disk
    seen = []
    events = propagate(predictor, lambda z: seen.append(z) or images[z], 12, 5, masks[5], "disk")
    first = next(events)
    events.close()
    assert seen == [6] and first.position == 6


def test_prompts_from_a_mask_lie_inside_it():
    rows, cols = np.mgrid[:40, :60]
    mask = ((rows - 20) ** 2 + (cols - 20) ** 2 <= 8**2) | (
        (rows - 20) ** 2 + (cols - 40) ** 2 <= 8**2
    )
    prompt = prompts_from_mask(mask, PropagationConfig(n_points=4, box_margin=0.0))
    assert len(prompt.points) == 4 and (prompt.point_labels == 1).all()
    for x, y in prompt.points:
        assert mask[int(y), int(x)]
    assert len({tuple(p) for p in prompt.points}) == 4
    np.testing.assert_array_equal(prompt.box, [12, 12, 49, 29])
    assert prompt.mask is not None and prompt.mask.sum() == mask.sum()
    grown = prompts_from_mask(mask, PropagationConfig(box_margin=0.5, use_mask=False))
    np.testing.assert_array_equal(grown.box, [0, 3.5, 60, 37.5])
    assert grown.mask is None


def test_bad_settings_and_starts_are_clear_errors(predictor, drifting_disk):
    images, masks = drifting_disk
    with pytest.raises(ValueError, match="needs a prompt"):
        PropagationConfig(use_box=False, n_points=0, use_mask=False)
    with pytest.raises(ValueError, match="min_overlap"):
        PropagationConfig(min_overlap=1.5)
    with pytest.raises(ValueError, match="outside the stack"):
        next(propagate(predictor, lambda z: images[z], 12, 12, masks[5], "disk"))
    with pytest.raises(ValueError, match="empty"):
        next(propagate(predictor, lambda z: images[z], 12, 0, masks[0], "disk"))


def test_other_objects_of_the_class_are_not_taken_along(predictor, drifting_disk):
    _, masks = drifting_disk
    rows, cols = np.mgrid[:48, :64]
    other = (rows - 8) ** 2 + (cols - 56) ** 2 <= 6**2  # a second disk on every slice
    images = np.stack([disk_image(mask | other, seed) for seed, mask in enumerate(masks)])
    _, result = run(propagate(predictor, lambda z: images[z], 12, 5, masks[5], "disk", CONFIG))
    assert result.positions == list(DISK_SLICES)
    assert not any((mask & other).any() for mask in result.masks.values())


def test_continuing_pieces_keeps_the_objects_that_overlap_the_previous_mask():
    rows, cols = np.mgrid[:30, :60]
    a = (rows - 15) ** 2 + (cols - 12) ** 2 <= 6**2
    b = (rows - 15) ** 2 + (cols - 45) ** 2 <= 6**2
    previous = (rows - 15) ** 2 + (cols - 9) ** 2 <= 6**2
    np.testing.assert_array_equal(continuing_pieces(a | b, previous), a)
    assert not continuing_pieces(b, previous).any()
