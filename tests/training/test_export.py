"""Annotated slices of stacks -> a dataset and a training folder the CLI reads identically."""

import json

import numpy as np
import pytest

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset
from napari_clip_guided_sam.training.export import (
    AnnotatedStack,
    annotated_pairs,
    class_map_arguments,
    export_training_folder,
    training_dataset,
)


def _stack(name="cells", rgb=False, annotated=(0, 2), shape=(4, 40, 48)):
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, dtype=np.int32)
    for z in annotated:
        labels[z, 5 + z : 20, 10:30] = 1
        labels[z, 25:35, 30:40] = 2
    image = rng.integers(0, 4000, shape + ((3,) if rgb else ()), dtype=np.uint16)
    return AnnotatedStack(name, image, labels, rgb=rgb)


def test_only_slices_with_a_label_are_used_in_stem_order():
    pairs = annotated_pairs([_stack("b", annotated=(3, 1)), _stack("a", annotated=(2,))])
    assert [p.stem for p in pairs] == ["0_b_1", "0_b_3", "1_a_2"]
    assert [p.source for p in pairs] == ["b Z=1", "b Z=3", "a Z=2"]
    assert all(p.labels.any() for p in pairs)


def test_pairs_are_copies_so_later_painting_changes_nothing():
    stack = _stack()
    pairs = annotated_pairs([stack])
    stack.labels[0] = 0
    assert pairs[0].labels.any()


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (AnnotatedStack("x", np.zeros((4, 40, 48)), np.ones((4, 40, 40), int)), "Shape mismatch"),
        (AnnotatedStack("x", np.zeros((40, 48, 3)), np.ones((40, 48), int)), "Shape mismatch"),
        (AnnotatedStack("x", np.zeros((4, 40, 48)), np.zeros((4, 40, 48), int)), "empty"),
    ],
)
def test_mismatched_shapes_and_empty_labels_are_refused(stack, message):
    with pytest.raises(ValueError, match=message):
        annotated_pairs([stack])


def test_class_map_arguments_match_the_cli():
    assert class_map_arguments(ClassMap.single_class("nucleus")) == ["--class", "nucleus"]
    assert class_map_arguments(ClassMap({2: "b", 1: "a"})) == ["--class-map", "1=a,2=b"]
    fully_labelled = ClassMap({0: "pore", 1: "clay"}, background=False, ignore_index=255)
    arguments = class_map_arguments(fully_labelled)
    assert arguments == [
        "--class-map", "0=pore,1=clay", "--background", "none", "--ignore-index", "255",
    ]  # fmt: skip
    from napari_clip_guided_sam.cli import build_parser
    from napari_clip_guided_sam.cli._common import class_map_from_args

    args = build_parser().parse_args(
        ["train", "--images", "i", "--labels", "l", "--output", "o", *arguments]
    )
    assert class_map_from_args(args) == fully_labelled  # what the CLI reads back


@pytest.mark.parametrize("rgb", [False, True])
def test_exported_folder_reads_back_as_the_same_dataset(tmp_path, rgb):
    class_map = ClassMap({1: "nucleus", 2: "cell"})
    pairs = annotated_pairs([_stack("cells", rgb=rgb), _stack("more", rgb=rgb, annotated=(1,))])
    result = export_training_folder(tmp_path / "data", pairs, class_map)
    in_memory = training_dataset(pairs, class_map)
    from_disk = SliceDataset.from_folders(result.images, result.labels, class_map)
    assert len(in_memory) == len(from_disk) == 2 * len(pairs)
    for a, b in zip(in_memory, from_disk, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.class_name == b.class_name
    assert ClassMap.from_config(json.loads((tmp_path / "data/class_map.json").read_text())) == (
        class_map
    )
    assert "--class-map 1=nucleus,2=cell" in (tmp_path / "data/README.txt").read_text()


def test_export_asks_before_replacing_and_leaves_no_stale_slice(tmp_path):
    class_map = ClassMap.single_class("nucleus")
    folder = tmp_path / "data"
    export_training_folder(folder, annotated_pairs([_stack(annotated=(0, 1, 2))]), class_map)
    with pytest.raises(FileExistsError, match="not empty"):
        export_training_folder(folder, annotated_pairs([_stack()]), class_map)
    export_training_folder(folder, annotated_pairs([_stack()]), class_map, overwrite=True)
    assert sorted(p.name for p in (folder / "images").iterdir()) == [
        "0_cells_0.tif",
        "0_cells_2.tif",
    ]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other files"):
        export_training_folder(other, annotated_pairs([_stack()]), class_map, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_labels_outside_the_class_map_are_refused_before_writing(tmp_path):
    pairs = annotated_pairs([_stack()])
    with pytest.raises(ValueError, match="not in the class map: 2"):
        export_training_folder(tmp_path / "data", pairs, ClassMap({1: "nucleus"}))
    assert not (tmp_path / "data").exists()
