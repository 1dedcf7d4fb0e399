"""Bad command lines: numbers out of range or not finite, impossible options (exit 2).

Defect 2 of issue 9: `--lr nan`, `--lr inf`, `--lr 1e6`, a NaN CLIP learning rate or time
budget passed validation, and a run with no validation saved a NaN checkpoint. Every numeric
training setting is now checked in one place (`training.settings`, run by `TrainingConfig`,
which the CLI and the training widget both build).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_clip_guided_sam.training.config import TrainingConfig
from napari_clip_guided_sam.training.settings import SettingError

from .helpers import (
    TINY,
    assert_unchanged,
    check_user_error,
    run_cli,
    segment_args,
    snapshot,
    train_args,
    write_pairs,
    write_png,
)

BAD_TRAINING_NUMBERS = [  # option, value, how the message shows the value
    ("--lr", "nan", "nan"),
    ("--lr", "inf", "inf"),
    ("--lr", "1e6", "1000000.0"),
    ("--lr", "-1e-4", "-0.0001"),
    ("--clip-lr", "nan", "nan"),
    ("--time-budget", "nan", "nan"),
    ("--time-budget", "0", "0.0"),
    ("--time-budget", "-5", "-5.0"),
    ("--val-fraction", "nan", "nan"),
    ("--val-fraction", "1", "1.0"),
    ("--epochs", "0", "0"),
    ("--batch-size", "0", "0"),
    ("--grad-accumulation", "-1", "-1"),
    ("--max-steps", "0", "0"),
    ("--checkpoint-every", "0", "0"),
    ("--seed", "-1", "-1"),
]


@pytest.mark.parametrize("option, value, shown", BAD_TRAINING_NUMBERS)
def test_bad_training_number_is_a_usage_error(tmp_path, option, value, shown):
    images, labels = write_pairs(tmp_path, count=1)
    before = snapshot(tmp_path)
    result = run_cli(*train_args(images, labels, tmp_path / "run", f"{option}={value}"))
    check_user_error(result, 2, option, f"got {shown};", "must be", "typical value")
    assert not (tmp_path / "run").exists()
    assert_unchanged(before)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", float("nan")),
        ("weight_decay", float("inf")),
        ("clip_weight_decay", -1.0),
        ("lr", 2.0),
        ("epochs", 2.5),
        ("epochs", True),
        ("cache_mb", -1),
    ],
)
def test_the_training_widget_and_api_share_the_same_check(field, value):
    """The widget builds its settings through `plan_run` -> `TrainingConfig`: the same check
    refuses the same values there (the widget turns the ValueError into a notification)."""
    with pytest.raises(SettingError, match=field) as raised:
        TrainingConfig(**{field: value})
    assert isinstance(raised.value, ValueError) and raised.value.name == field


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threshold", "nan"], ["threshold", "[0, 1)"]),
        (["--threshold", "1.5"], ["threshold", "[0, 1)"]),
        (["--points", "missing.csv"], ["--points", "not found"]),
        (["-c", "background"], ["background", "name what to segment"]),
        (["-c", "x" * 101], ["101 characters", "at most 100"]),
        (["-c", "nucleus", "nucleus"], ["given twice", "each class once"]),
        (["-c", "nu\tcleus"], ["control characters", "one line"]),
        (["--suffix", "/../../evil"], ["suffix", "inside the output folder only"]),
    ],
    ids=[
        "nan-threshold",
        "threshold-above-1",
        "missing-points",
        "background",
        "long-name",
        "duplicate",
        "tab",
        "suffix-traversal",
    ],
)
def test_bad_segment_option_is_a_usage_error(images, tmp_path, args, words):
    before = snapshot(images)
    result = run_cli("segment", images, "-o", tmp_path / "out", *TINY, *args)
    if "-c" not in args:
        result = run_cli("segment", images, "-o", tmp_path / "out", "-c", "nucleus", *TINY, *args)
    check_user_error(result, 2, *words)
    assert not (tmp_path / "out").exists()
    assert_unchanged(before)


def test_unknown_preset_names_the_presets(images, tmp_path):
    result = run_cli("segment", images, "-c", "nucleus", "-o", tmp_path / "out", "--preset", "huge")
    check_user_error(result, 1, "huge", "tiny")


def test_a_device_typo_is_refused_by_the_parser(images, tmp_path):
    result = run_cli("segment", images, "-c", "nucleus", "--device", "gpu")
    check_user_error(result, 2, "invalid choice: 'gpu'", "choose from")


POINTS = [
    ("x,y\nnan,5\n", ["line 2", "not finite"]),
    ("x,y\n3,inf\n", ["line 2", "not finite"]),
    ("x,y,slice\n3,5,inf\n", ["line 2", "not a number"]),
    ("x,y,slice\n3,5,-2\n", ["line 2", "count from 0"]),
    ("x,y,label\n3,5,2\n", ["point labels must be 1", "or 0"]),
    ("x,y,file\n3,5,other.png\n", ["names other.png", "not among the images"]),
    ("x,y,slice\n3,5,4\n", ["slice 4 of a.png", "has 1 slice"]),
    ("", ["is empty", "header like x,y"]),
    ("\x00\xff\xfe", ["not a CSV text file", "save the clicks as CSV"]),
]


@pytest.mark.parametrize("text, words", POINTS)
def test_clicks_that_cannot_be_used_are_refused_before_any_work(tmp_path, text, words):
    """Defect 6: NaN clicks passed the in-frame check and gave NaN masks with exit 0."""
    image = write_png(tmp_path / "in" / "a.png")
    points = tmp_path / "clicks.csv"
    points.write_bytes(text.encode("latin-1"))
    before = snapshot(tmp_path)
    result = run_cli(*segment_args(image, tmp_path / "out", "--points", points))
    check_user_error(result, 1, *words)
    assert not list(tmp_path.glob("out/*.tif"))
    assert_unchanged(before)


@pytest.mark.parametrize("xy", [[np.nan, 5.0], [3.0, np.inf], [-np.inf, 1.0]])
def test_clicks_that_are_not_finite_are_refused_by_the_api(predictor, xy):
    """Defect 6 through the Python API (the segment widget's path)."""
    rgb = np.zeros((40, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="not numbers"):
        predictor.segment(rgb, ["nucleus"], np.array([xy]), np.array([1]))
