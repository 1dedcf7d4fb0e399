import torch

from napari_clip_guided_sam.model.prompts import (
    dense_prompt,
    prompt_mask,
    sample_points_from_map,
    sample_points_from_masks,
)


def _map_with_square():
    similarity = torch.zeros(1, 64, 64)
    similarity[0, 10:20, 30:50] = 0.95
    return similarity


def test_points_fall_inside_the_prompt_mask_and_repeat_with_the_seed():
    similarity = _map_with_square()
    coords, labels = sample_points_from_map(similarity, 0.8, 5, torch.Generator().manual_seed(42))
    again, _ = sample_points_from_map(similarity, 0.8, 5, torch.Generator().manual_seed(42))
    assert coords.shape == (1, 5, 2) and labels.tolist() == [[1] * 5]
    x, y = coords[0, :, 0].long(), coords[0, :, 1].long()
    assert prompt_mask(similarity, 0.8)[0, y, x].all()
    torch.testing.assert_close(coords, again)
    assert torch.equal(coords, coords.round())  # integer pixel coordinates


def test_points_are_drawn_from_row_major_flat_indices():
    similarity = _map_with_square()
    generator = torch.Generator().manual_seed(42)
    coords, _ = sample_points_from_map(similarity, 0.8, 5, generator)
    flat = torch.nonzero(similarity[0].flatten() > 0.8).flatten()
    picks = flat[torch.randint(len(flat), (5,), generator=torch.Generator().manual_seed(42))]
    expected = torch.stack([picks % 64, picks // 64], -1).float()
    torch.testing.assert_close(coords[0], expected)


def test_empty_mask_falls_back_to_the_top_pixels():
    similarity = torch.full((1, 16, 16), 0.1)
    similarity[0, 3, 7] = 0.5
    coords, labels = sample_points_from_map(similarity, 0.8, 1, torch.Generator().manual_seed(0))
    assert coords[0].tolist() == [[7.0, 3.0]] and labels.tolist() == [[1]]


def test_optional_negative_points_come_from_low_similarity():
    similarity = _map_with_square()
    coords, labels = sample_points_from_map(
        similarity, 0.8, 2, torch.Generator().manual_seed(0), n_negative=3
    )
    assert labels.tolist() == [[1, 1, 0, 0, 0]]
    x, y = coords[0, 2:, 0].long(), coords[0, 2:, 1].long()
    assert (similarity[0, y, x] < 0.2).all()


def test_dense_prompt_is_a_hard_zero_or_scale_map():
    dense = dense_prompt(_map_with_square(), 16, 0.8, 255.0)
    assert dense.shape == (1, 1, 16, 16)
    assert set(dense.unique().tolist()) == {0.0, 255.0}
    assert dense[0, 0, 3, 10] == 255.0 and dense[0, 0, 10, 3] == 0.0


def test_gt_points_lie_on_the_mask_and_empty_masks_give_negatives():
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, 5:9, 20:25] = True
    coords, labels = sample_points_from_masks(masks, 5, torch.Generator().manual_seed(3))
    x, y = coords[0, :, 0].long(), coords[0, :, 1].long()
    assert masks[0, y, x].all() and labels[0].tolist() == [1] * 5
    assert labels[1].tolist() == [0] * 5
