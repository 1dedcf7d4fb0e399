"""The slice dataset, folder datasets and the train/validation split."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import Sample, SliceDataset, infer_axes, train_val_split
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.normalize import NormalizeConfig
from napari_clip_guided_sam.data.reader import read_image


@pytest.fixture
def stack_pair(rng):
    """A 4-slice uint16 stack; labels: 1 and 3 are "cell", 2 is "membrane".

    Slice 0: cell only; slice 1: membrane only; slice 2: both; slice 3: empty.
    """
    image = rng.integers(100, 4000, size=(4, 16, 16)).astype(np.uint16)
    labels = np.zeros((4, 16, 16), np.uint8)
    labels[0, 2:5, 2:5] = 1
    labels[1, 8:10, :] = 2
    labels[2, 1:3, 1:3] = 3
    labels[2, 10:12, 10:12] = 2
    return ImageData(image, "ZYX"), labels


CELL_MEMBRANE = ClassMap.from_dict({1: "cell", 2: "membrane", 3: "cell"})


# --------------------------------------------------------------------------- SliceDataset


def test_dataset_has_one_item_per_slice_and_class(stack_pair):
    dataset = SliceDataset([stack_pair], CELL_MEMBRANE)
    assert len(dataset) == 8
    sample = dataset[4]  # slice 2, "cell"
    assert isinstance(sample, Sample)
    assert (sample.image.shape, sample.image.dtype) == ((16, 16, 3), np.uint8)
    assert (sample.mask.dtype, sample.class_name) == (np.bool_, "cell")
    np.testing.assert_array_equal(sample.mask, np.isin(stack_pair[1][2], [1, 3]))
    assert "Z=2" in sample.source
    assert dataset[5].class_name == "membrane"
    assert dataset.slice_keys[4] == dataset.slice_keys[5] == (0, (2,))


def test_skip_empty_drops_absent_classes(stack_pair):
    dataset = SliceDataset([stack_pair], CELL_MEMBRANE, skip_empty=True)
    assert [(index, name) for _, index, name in dataset.items] == [
        ((0,), "cell"),
        ((1,), "membrane"),
        ((2,), "cell"),
        ((2,), "membrane"),
    ]
    assert all(dataset[i].mask.any() for i in range(len(dataset)))
    assert dataset.n_slices == 4


def test_image_matches_to_model_rgb_and_cache_is_safe(stack_pair):
    dataset = SliceDataset([stack_pair], CELL_MEMBRANE, cache_size=1)
    first = dataset[0]
    first.image[:] = 0  # callers may modify what they get
    assert dataset[1].image.any()


def test_stack_normalisation_uses_one_range(stack_pair):
    image, labels = stack_pair
    bright = image.array.copy()
    bright[1] = bright[1] // 4  # slice 1 is dim
    pair = (ImageData(bright, "ZYX"), labels)
    per_stack = SliceDataset([pair], CELL_MEMBRANE, normalize=NormalizeConfig(mode="stack"))
    per_slice = SliceDataset([pair], CELL_MEMBRANE)
    assert per_stack[2].image.mean() < 0.5 * per_slice[2].image.mean()


def test_mismatched_shapes_name_both(stack_pair):
    image, labels = stack_pair
    with pytest.raises(ValueError, match=r"\(4, 16, 16\).*\(4, 16, 15\)"):
        SliceDataset([(image, labels[..., :15])], CELL_MEMBRANE)


def test_mismatched_plain_arrays_name_both(rng):
    with pytest.raises(ValueError, match=r"\(8, 9\).*\(8, 10\)"):
        SliceDataset([(np.zeros((8, 9)), np.zeros((8, 10), np.uint8))], CELL_MEMBRANE)


def test_unknown_label_values_raise(stack_pair):
    image, labels = stack_pair
    labels = labels.copy()
    labels[3, 0, 0] = 9
    with pytest.raises(ValueError, match="not in the class map: 9"):
        SliceDataset([(image, labels)], CELL_MEMBRANE)


def test_plain_arrays_with_channels_and_singletons(rng):
    rgb = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
    labels = np.zeros((1, 10, 12), np.uint16)  # a [1, H, W] stack is one slice
    labels[0, 2:4, 2:4] = 5
    dataset = SliceDataset([(rgb, labels)], ClassMap.single_class("blob"))
    assert len(dataset) == 1
    np.testing.assert_array_equal(dataset[0].image, rgb)
    assert dataset[0].mask.sum() == 4
    channels_first = SliceDataset(
        [(np.moveaxis(rgb, -1, 0), labels[0], "CYX")], ClassMap.single_class("blob")
    )
    np.testing.assert_array_equal(channels_first[0].image, rgb)


def test_infer_axes():
    assert infer_axes((5, 8, 9), (5, 8, 9)) == "ZYX"
    assert infer_axes((8, 9, 4), (8, 9)) == "YXC"
    assert infer_axes((2, 8, 9), (8, 9)) == "CYX"
    with pytest.raises(ValueError, match="pass the axes"):
        infer_axes((8, 9), (3, 8, 9, 2, 2))


def test_samples_convert_to_tensors(stack_pair):
    sample = SliceDataset([stack_pair], CELL_MEMBRANE)[0]
    image = torch.from_numpy(sample.image).permute(2, 0, 1)
    assert image.shape == (3, 16, 16) and torch.from_numpy(sample.mask).dtype == torch.bool


# --------------------------------------------------------------------------- folders


def test_folder_dataset_on_dsb2018(dsb_dir):
    dataset = SliceDataset.from_folders(
        dsb_dir / "images", dsb_dir / "labels", ClassMap.single_class("nucleus")
    )
    assert len(dataset) == 3 and dataset.skipped == []
    image_path = sorted((dsb_dir / "images").iterdir())[0]
    label_path = dsb_dir / "labels" / (image_path.stem + ".tif")
    sample = dataset[0]
    np.testing.assert_array_equal(sample.image, read_image(image_path).array[..., :3])
    np.testing.assert_array_equal(sample.mask, read_image(label_path).array > 0)
    assert sample.class_name == "nucleus" and image_path.name in sample.source


def test_folder_dataset_lazy_matches_eager(dsb_dir):
    args = (dsb_dir / "images", dsb_dir / "labels", ClassMap.single_class("nucleus"))
    lazy, eager = SliceDataset.from_folders(*args, lazy=True), SliceDataset.from_folders(*args)
    np.testing.assert_array_equal(lazy[2].image, eager[2].image)


def test_folder_with_corrupt_file_skips_and_lists_it(dsb_dir, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    shutil.copytree(dsb_dir / "images", images)
    shutil.copytree(dsb_dir / "labels", labels)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(labels / "broken.tif")
    (images / "extra.png").write_bytes(b"no labels for me")
    with pytest.warns(UserWarning, match="broken.png") as caught:
        dataset = SliceDataset.from_folders(images, labels, ClassMap.single_class("nucleus"))
    assert len(dataset) == 3
    assert [(p.name, "broken.png" in reason) for p, reason in dataset.skipped] == [
        ("broken.png", True)
    ]
    assert [p.name for p in dataset.unmatched] == ["extra.png"]
    assert any("extra.png" in str(w.message) for w in caught)


def test_folder_with_nothing_usable_raises(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "im" / "a.png").write_bytes(b"broken")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "lab" / "a.tif")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable"):
        SliceDataset.from_folders(tmp_path / "im", tmp_path / "lab", ClassMap.single_class("x"))


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_and_keeps_slices_together(stack_pair):
    dataset = SliceDataset([stack_pair], CELL_MEMBRANE)
    train, val = train_val_split(dataset, 0.25, seed=3)
    assert (train, val) == train_val_split(dataset, 0.25, seed=3)
    assert sorted(train + val) == list(range(len(dataset)))
    keys = dataset.slice_keys
    assert {keys[i] for i in train}.isdisjoint({keys[i] for i in val})
    assert len({keys[i] for i in val}) == 1


def test_split_edge_cases():
    assert train_val_split(2, 0.01)[1] != []  # at least one validation item
    assert len(train_val_split(2, 0.99)[0]) == 1  # and one training item
    assert train_val_split(5, 0.0) == ([0, 1, 2, 3, 4], [])
    assert train_val_split(1, 0.5) == ([0], [])
    assert train_val_split(100, 0.2, seed=1) != train_val_split(100, 0.2, seed=2)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(10, 1.0)
