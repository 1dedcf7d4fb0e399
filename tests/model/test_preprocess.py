import numpy as np
import pytest
import torch

from napari_clip_guided_sam.model.preprocess import prepare_image


def test_squash_fills_the_frame_and_normalises(rgb_image):
    tensor, frame = prepare_image(rgb_image, 256, "squash")
    assert tensor.shape == (3, 256, 256) and tensor.dtype == torch.float32
    assert frame.scale_xy == (2.0, 256 / 96)
    np.testing.assert_allclose(frame.points_to_input([[64, 48]]), [[128.0, 128.0]])
    assert -3 < tensor.mean() < 3


def test_longest_side_pad_keeps_aspect_and_pads_bottom_right(rgb_image):
    tensor, frame = prepare_image(rgb_image, 256, "longest_side_pad")
    assert frame.content_size == (192, 256)
    padding = tensor[:, 192:, :]
    assert torch.equal(padding, torch.zeros_like(padding))
    logits = torch.zeros(1, 64, 64)
    logits[:, :48, :] = 5.0  # content rows only
    assert frame.logits_to_original(logits).shape == (1, 96, 128)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32), np.uint8), "shape"),
        (np.zeros((32, 32, 4), np.uint8), "shape"),
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        ([[0]], "numpy"),
    ],
)
def test_bad_images_are_refused_with_the_expected_form(image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        prepare_image(image, 256)


def test_points_outside_the_image_are_refused(rgb_image):
    _, frame = prepare_image(rgb_image, 256)
    with pytest.raises(ValueError, match="outside the image"):
        frame.points_to_input([[128, 10]])


@pytest.mark.parametrize("mode", ["squash", "longest_side_pad"])
def test_boxes_map_like_their_corner_points(rgb_image, mode):
    _, frame = prepare_image(rgb_image, 64, mode)  # 96 x 128 image
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 127.0, 95.0]])
    corners = frame.points_to_input(boxes.reshape(-1, 2)).reshape(-1, 4)
    np.testing.assert_allclose(frame.boxes_to_input(boxes), corners)


def test_boxes_past_the_border_are_clipped_and_bad_boxes_refused(rgb_image):
    _, frame = prepare_image(rgb_image, 64)
    clipped = frame.boxes_to_input(np.array([[-5.0, -5.0, 200.0, 50.0]]))
    np.testing.assert_allclose(clipped, [[0.0, 0.0, 64.0, 50 * 64 / 96]])
    for box, message in (
        ([[130.0, 0.0, 140.0, 10.0]], "outside the image"),
        ([[10.0, 10.0, 10.0, 20.0]], "no area"),
        ([[0.0, np.inf, 10.0, 20.0]], "finite"),
        ([[0.0, 1.0, 2.0]], r"\(n, 4\)"),
    ):
        with pytest.raises(ValueError, match=message):
            frame.boxes_to_input(np.array(box))


@pytest.mark.parametrize("mode", ["squash", "longest_side_pad"])
def test_masks_map_into_the_frame_with_zero_padding(rgb_image, mode):
    _, frame = prepare_image(rgb_image, 64, mode)
    mask = np.zeros((96, 128), bool)
    mask[:48] = True  # the top half of the image
    resized = frame.mask_to_input(mask)
    assert resized.shape == (64, 64) and resized.dtype == torch.float32
    content_h, content_w = frame.content_size
    assert resized[: content_h // 2 - 1, :content_w].min() == 1.0
    assert resized[content_h // 2 + 1 :].max() == 0.0
    with pytest.raises(ValueError, match="shape"):
        frame.mask_to_input(np.ones((10, 10), bool))
