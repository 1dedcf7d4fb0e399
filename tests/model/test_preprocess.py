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
