"""Object prompts: boxes and clicks per object, decoder-only refresh, text guide on or off,
and "segment all <class>"."""

import numpy as np
import pytest

from napari_clip_guided_sam.inference.instances import InstanceConfig
from napari_clip_guided_sam.inference.objects import (
    ObjectPrompt,
    instances_from_text,
    object_prompts,
    rectangle_to_box,
    select_object,
)
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.inference.propagation import mask_iou

from .conftest import disk_image


@pytest.fixture
def predictor(disk_model):
    return Predictor(disk_model, device="cpu", precision="fp32")


@pytest.fixture
def two_disks():
    """An image with two disks and their masks: left (centre 20, 24) and right (44, 24)."""
    rows, cols = np.mgrid[:48, :64]
    left = (rows - 24) ** 2 + (cols - 16) ** 2 <= 7**2
    right = (rows - 24) ** 2 + (cols - 46) ** 2 <= 7**2
    return disk_image(left | right, seed=3), left, right


def test_each_box_is_one_object(predictor, two_disks):
    image, left, right = two_disks
    boxes = [[7, 15, 26, 34], [37, 15, 56, 34]]
    prediction = predictor.segment_objects(image, "disk", object_prompts(boxes=boxes))
    assert prediction.masks.shape == (2, 48, 64) and prediction.masks.dtype == bool
    assert prediction.iou_predictions.shape == (2,)
    assert prediction.class_name == "disk"
    assert mask_iou(prediction.masks[0], left) > 0.6
    assert mask_iou(prediction.masks[1], right) > 0.6


def test_clicks_without_the_text_guide_pick_the_clicked_disk(predictor, two_disks):
    image, left, right = two_disks
    clicked = ObjectPrompt(points=[[46, 24]], point_labels=[1])
    prediction = predictor.segment_objects(image, "disk", [clicked], text_guide=False)
    assert mask_iou(prediction.masks[0], right) > 0.6
    assert not (prediction.masks[0] & left).any()


def test_changing_prompts_runs_only_the_decoder(predictor, two_disks):
    image, _, _ = two_disks
    predictor.segment_objects(image, "disk", object_prompts(boxes=[[7, 15, 26, 34]]))
    encoded = predictor.stats.encoder_calls
    for prompts in (
        object_prompts([[16, 24]], [1], [[7, 15, 26, 34]]),
        [ObjectPrompt(box=[37, 15, 56, 34])],
        [ObjectPrompt(mask=np.ones((48, 64), bool))],
    ):
        predictor.predict_objects("disk", prompts, text_guide=False)
    assert predictor.stats.encoder_calls == encoded
    assert predictor.stats.decoder_calls == 4


def test_the_text_alone_prompts_an_object_without_prompts(predictor, two_disks):
    image, left, right = two_disks
    text_only = predictor.segment_objects(image, "disk", [ObjectPrompt()])
    semantic = predictor.segment(image, ["disk"])
    np.testing.assert_allclose(text_only.probabilities, semantic.probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="text guide is off"):
        predictor.predict_objects("disk", [ObjectPrompt()], text_guide=False)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([20, 10, 10, 30], "no area"),
        ([100, 60, 120, 70], "outside the image"),
        ([np.nan, 0, 10, 10], "finite"),
        ([0, 0, 10], "x0, y0, x1, y1"),
    ],
)
def test_bad_boxes_are_clear_errors(predictor, two_disks, box, message):
    predictor.set_image(two_disks[0])
    with pytest.raises(ValueError, match=message):
        predictor.predict_objects("disk", [ObjectPrompt(box=box)])


def test_a_box_past_the_border_is_clipped_to_the_image(predictor, two_disks):
    image, left, _ = two_disks
    inside = predictor.segment_objects(image, "disk", [ObjectPrompt(box=[0, 15, 26, 34])])
    past = predictor.segment_objects(image, "disk", [ObjectPrompt(box=[-9, 15, 26, 34])])
    # Same prompt after clipping; the second call reuses the cached embedding and may run
    # the decoder with another thread count (float sums in another order).
    np.testing.assert_allclose(inside.probabilities, past.probabilities, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(inside.masks, past.masks)


def test_clicks_go_to_the_box_they_are_in():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 40, 40]])
    points = np.array([[5, 5], [25, 5], [35, 35], [50, 50]])
    labels = np.array([1, 0, 1, 0])
    objects = object_prompts(points, labels, boxes)
    assert len(objects) == 3  # the loose click is negative: shared, no object of its own
    np.testing.assert_array_equal(objects[0].points, [[5, 5], [50, 50]])  # smallest box
    np.testing.assert_array_equal(objects[1].points, [[25, 5], [50, 50]])
    np.testing.assert_array_equal(objects[2].points, [[35, 35], [50, 50]])
    np.testing.assert_array_equal(objects[1].point_labels, [0, 0])

    positive_loose = object_prompts(points, np.array([1, 0, 1, 1]), boxes)
    assert len(positive_loose) == 4  # a positive click in no box is one more object
    np.testing.assert_array_equal(positive_loose[3].points, [[50, 50]])
    assert positive_loose[3].box is None

    clicks_only = object_prompts(points, labels)
    assert len(clicks_only) == 1 and len(clicks_only[0].points) == 4
    assert len(object_prompts()) == 1 and not object_prompts()[0].has_user_prompt


def test_object_prompts_refuse_bad_clicks():
    with pytest.raises(ValueError, match="finite"):
        ObjectPrompt(points=[[np.nan, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="1 .positive. or 0"):
        ObjectPrompt(points=[[1, 1]], point_labels=[2])
    with pytest.raises(ValueError, match="2 points but 1"):
        ObjectPrompt(points=[[1, 1], [2, 2]], point_labels=[1])


def test_a_rectangle_drawn_in_any_direction_is_one_box():
    corners_yx = np.array([[30, 40], [30, 10], [5, 10], [5, 40]])
    np.testing.assert_array_equal(rectangle_to_box(corners_yx), [10, 5, 40, 30])


def test_segment_all_gives_every_disk_its_own_id(predictor, two_disks):
    image, left, right = two_disks
    found = instances_from_text(predictor, image, "disk", InstanceConfig("connected"))
    assert found.count == 2
    ids = {int(np.bincount(found.labels[m]).argmax()) for m in (left, right)}
    assert ids == {1, 2}
    assert found.labels.dtype == np.int32


def test_select_object_keeps_what_the_prompts_point_at():
    rows, cols = np.mgrid[:40, :60]
    left = (rows - 20) ** 2 + (cols - 12) ** 2 <= 6**2
    middle = (rows - 20) ** 2 + (cols - 30) ** 2 <= 6**2
    right = (rows - 20) ** 2 + (cols - 48) ** 2 <= 6**2
    mask = left | middle | right
    box = select_object(mask, ObjectPrompt(box=[0, 0, 39.4, 39]))
    np.testing.assert_array_equal(box, (left | middle) & (cols <= 39))
    clicks = ObjectPrompt(points=[[12, 20], [48, 20], [30, 2]], point_labels=[1, 1, 0])
    np.testing.assert_array_equal(select_object(mask, clicks), left | right)
    box_and_click = ObjectPrompt(points=[[30, 20]], point_labels=[1], box=[0, 0, 39, 39])
    np.testing.assert_array_equal(select_object(mask, box_and_click), middle)
    missed = ObjectPrompt(points=[[30, 35]], point_labels=[1])
    assert not select_object(mask, missed).any()
    np.testing.assert_array_equal(select_object(mask, ObjectPrompt()), mask)


def test_without_selection_the_mask_is_the_decoders(predictor, two_disks):
    image, left, right = two_disks
    clicked = [ObjectPrompt(points=[[46, 24]], point_labels=[1])]
    raw = predictor.segment_objects(image, "disk", clicked, select=False)
    np.testing.assert_array_equal(raw.masks[0], raw.probabilities[0] > 0.5)
    assert (raw.masks[0] & left).any()  # the fine-tuned model segments its class
