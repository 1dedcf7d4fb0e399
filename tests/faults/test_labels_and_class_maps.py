"""Bad labels and class maps through `clip-guided-sam train` / `evaluate` and the API.

Defects of issue 9 pinned here: 9 (negative label values silently counted as foreground with
`--class`) and 10 (a `class_map.json` holding a bare number gave exit 1 and a Python error).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset
from napari_clip_guided_sam.model.guide import validate_class_names

from .helpers import (
    assert_unchanged,
    check_user_error,
    run_cli,
    snapshot,
    square_labels,
    train_args,
    write_pairs,
)


def train(tmp_path, images, labels, *classes: str):
    output = tmp_path / "run"
    return run_cli(*train_args(images, labels, output, "--max-steps", "1", classes=classes))


@pytest.mark.parametrize("classes", [["--class", "nucleus"], ["--class-map", "1=nucleus"]])
def test_negative_label_values_are_refused(tmp_path, classes):
    """Defect 9: with --class, -1 counted as foreground; now both forms refuse it."""
    labels = square_labels()
    labels[0, :4] = -1
    images, label_dir = write_pairs(tmp_path, count=1, labels=labels)
    before = snapshot(tmp_path)
    result = train(tmp_path, images, label_dir, *classes)
    check_user_error(result, 1, "no usable image/label pair", "negative label values: -1")
    assert "fix the label image" in result.err
    assert not (tmp_path / "run" / "last.safetensors").exists()
    assert_unchanged(before)


def test_negative_labels_are_refused_by_the_api():
    labels = square_labels()
    labels[1, 1] = -3
    pairs = [(np.zeros((40, 48, 3), np.uint8), labels)]
    with pytest.raises(ValueError, match="negative label values: -3"):
        SliceDataset(pairs, ClassMap.single_class("nucleus"))


@pytest.mark.parametrize(
    "labels, reason",
    [
        (np.full((40, 48), 0.5, np.float32), "non-integer values"),
        (np.zeros((30, 30), np.uint8), "shape mismatch"),
        (np.zeros((40, 48, 3), np.uint8), "channels"),
    ],
    ids=["float", "shape", "rgb-labels"],
)
def test_unusable_labels_name_the_pair_and_the_reason(tmp_path, labels, reason):
    images, label_dir = write_pairs(tmp_path, count=1, labels=labels)
    result = train(tmp_path, images, label_dir, "--class", "nucleus")
    check_user_error(result, 1, "no usable image/label pair", "p0")
    assert reason in result.err


CLASS_MAP_FILES = [
    ("5", ["--class-map", "JSON object", "got int 5"]),
    ("[1, 2]", ["--class-map", "JSON object", "got list"]),
    ('{"classes": 3}', ["--class-map", "maps label values to names"]),
    ('{"classes": {"1": 7}}', ["--class-map", "non-empty strings"]),
    ('{"other": 1}', ["--class-map", "'single_class' or 'classes'"]),
    ("{not json", ["--class-map", "not valid JSON", "write e.g."]),
    ('{"classes": {"0": "cell"}}', ["--class-map", "0 is background"]),
    ('{"classes": {"-2": "cell"}}', ["--class-map", "values are positive"]),
    ('{"classes": {"1": "background"}}', ["--class-map", "background", "name what"]),
    ('{"single_class": ""}', ["--class-map", "non-empty"]),
]


@pytest.mark.parametrize("text, words", CLASS_MAP_FILES, ids=[t for t, _ in CLASS_MAP_FILES])
def test_a_bad_class_map_file_is_a_usage_error(tmp_path, text, words):
    """Defect 10: a bare number gave exit 1 and "argument of type 'int' is not iterable"."""
    images, labels = write_pairs(tmp_path, count=1)
    class_map = tmp_path / "class_map.json"
    class_map.write_text(text)
    result = train(tmp_path, images, labels, "--class-map", str(class_map))
    check_user_error(result, 2, *words)
    assert not (tmp_path / "run").exists()


def test_a_class_map_file_that_is_not_text_is_a_usage_error(tmp_path):
    images, labels = write_pairs(tmp_path, count=1)
    class_map = tmp_path / "class_map.json"
    class_map.write_bytes(b"\xff\xfe\x00binary")
    check_user_error(
        train(tmp_path, images, labels, "--class-map", str(class_map)),
        2,
        "--class-map",
        "cannot read",
    )


def test_a_folder_named_like_a_class_map_is_a_usage_error(tmp_path):
    images, labels = write_pairs(tmp_path, count=1)
    (tmp_path / "map.json").mkdir()
    check_user_error(
        train(tmp_path, images, labels, "--class-map", str(tmp_path / "map.json")),
        2,
        "--class-map",
        "not found",
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("1=nucleus,1=cell", ["given twice"]),
        ("=x", ["VALUE=NAME"]),
        ("1.5=x", ["integer"]),
        (",,", ["empty"]),
        ("1=background", ["background"]),
        ("1=" + "y" * 120, ["at most 100"]),
    ],
)
def test_a_bad_typed_class_map_is_a_usage_error(tmp_path, text, words):
    images, labels = write_pairs(tmp_path, count=1)
    check_user_error(train(tmp_path, images, labels, "--class-map", text), 2, "--class-map", *words)


@pytest.mark.parametrize("name", ["", "   ", "Background", "a\nb"])
def test_a_bad_single_class_name_is_a_usage_error(tmp_path, name):
    images, labels = write_pairs(tmp_path, count=1)
    result = train(tmp_path, images, labels, "--class", name)
    check_user_error(result, 2, "--class")


def test_the_class_name_rule_is_one_function_for_every_path():
    """The CLI, batch runs, training and the widgets call `validate_class_names`."""
    for bad in (["background"], ["x" * 101], ["a", "a"], ["tab\there"], [""]):
        with pytest.raises(ValueError):
            validate_class_names(bad)
    validate_class_names(["nucleus", "cell membrane", "noyau cellulaire", "x" * 100])


def test_evaluate_refuses_a_class_map_file_holding_a_number(tmp_path, trained_checkpoint):
    images, labels = write_pairs(tmp_path, count=1)
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps(7))
    result = run_cli(
        "evaluate",
        "--checkpoint",
        trained_checkpoint,
        "--images",
        images,
        "--labels",
        labels,
        "--class-map",
        class_map,
        "--device",
        "cpu",
        "--precision",
        "fp32",
    )
    check_user_error(result, 2, "--class-map", "JSON object")
