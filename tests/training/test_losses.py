"""Losses: known values, reductions and gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from napari_clip_guided_sam.training.losses import (
    bce_loss,
    segmentation_loss,
    soft_dice_loss,
    soft_iou_loss,
)


def test_known_values_at_even_odds():
    # p = 0.5 everywhere against 4 foreground pixels: overlap 2, sum(p) 2, sum(t) 4.
    logits, target = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    assert bce_loss(logits, target).item() == pytest.approx(math.log(2))
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - 5 / 7)
    assert soft_iou_loss(logits, target).item() == pytest.approx(1 - 3 / 5)
    total = segmentation_loss(logits, target, "bce_dice_iou").item()
    assert total == pytest.approx(math.log(2) + 2 / 7 + 0.4)


def test_confident_correct_prediction_costs_nearly_nothing():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 30
    assert segmentation_loss(logits, target).item() < 1e-3


def test_bce_only_switch_is_plain_bce():
    logits, target = torch.randn(3, 1, 5, 5), torch.rand(3, 1, 5, 5) > 0.5
    expected = F.binary_cross_entropy_with_logits(logits, target.float())
    assert segmentation_loss(logits, target, "bce").item() == pytest.approx(expected.item())


def test_dice_and_iou_average_over_masks_not_pixels():
    # One perfect mask and one fully wrong mask weigh the same, whatever their sizes.
    target = torch.zeros(2, 4, 4)
    target[0] = 1
    target[1, 0, 0] = 1
    logits = torch.full((2, 4, 4), -30.0)
    logits[0] = 30.0
    per_mask = [soft_dice_loss(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert soft_dice_loss(logits, target).item() == pytest.approx(sum(per_mask) / 2)


def test_gradients_push_logits_towards_the_target():
    target = torch.zeros(1, 6, 6)
    target[0, :3] = 1
    logits = torch.zeros(1, 6, 6, requires_grad=True)
    segmentation_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[target.bool()] < 0).all()
    assert (logits.grad[~target.bool()] > 0).all()


def test_empty_target_has_finite_loss_and_gradient():
    logits = torch.zeros(1, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.zeros(1, 4, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_loss(torch.zeros(1, 4, 4), torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="Unknown loss"):
        segmentation_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), "focal")


@pytest.mark.parametrize("kind", ["bce_dice_iou", "bce"])
def test_ignored_pixels_add_no_loss_and_get_no_gradient(kind):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 6, generator=generator, requires_grad=True)
    target = torch.rand(2, 6, 6, generator=generator) > 0.5
    valid = torch.ones(2, 6, 6, dtype=torch.bool)
    valid[:, :2] = False  # two unannotated rows per mask
    loss = segmentation_loss(logits, target, kind, valid)
    loss.backward()
    assert torch.all(logits.grad[:, :2] == 0) and torch.any(logits.grad[:, 2:] != 0)
    flipped = target.clone()
    flipped[:, :2] = ~flipped[:, :2]  # whatever the truth says there does not matter
    assert segmentation_loss(logits, flipped, kind, valid).item() == pytest.approx(loss.item())
    # and the valid pixels alone give the same loss as a crop to them
    crop = segmentation_loss(logits[:, 2:], target[:, 2:], kind)
    assert loss.item() == pytest.approx(crop.item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["bce_dice_iou", "bce"])
def test_a_batch_loss_is_the_mean_of_its_examples_losses(kind):
    # Training on W processes averages W batches' gradients: that equals one batch's only
    # when a batch's loss is the mean of its examples', also with unannotated pixels.
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 6, generator=generator)
    target = torch.rand(2, 6, 6, generator=generator) > 0.5
    valid = torch.ones(2, 6, 6, dtype=torch.bool)
    valid[0, :4] = False  # the first example has far fewer annotated pixels
    whole = segmentation_loss(logits, target, kind, valid)
    each = [segmentation_loss(logits[i : i + 1], target[i : i + 1], kind, valid[i : i + 1])
            for i in range(2)]  # fmt: skip
    assert whole.item() == pytest.approx((each[0].item() + each[1].item()) / 2, rel=1e-6)
