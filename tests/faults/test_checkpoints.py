"""Bad checkpoints and weights files: never run code, never a traceback, always what to do.

Defect 1 of issue 9 (code execution from a weights file; sha256 of cached files) is pinned
by `tests/model/test_torchscript.py`, `tests/model/test_weights.py` and
`tests/_widgets/test_unsafe_checkpoint.py`; the cases below drive the same files through the
command line. Defect 10 (a malformed base-weights tag gave "invalid literal for int()") and
the NaN checkpoint of defect 2 are pinned here.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from napari_clip_guided_sam.model.checkpoint import CheckpointError, read_checkpoint

from .helpers import TINY, assert_unchanged, check_user_error, run_cli, snapshot


def segment_with(images, tmp_path, checkpoint, *extra):
    return run_cli(
        "segment",
        images,
        "-c",
        "nucleus",
        "-o",
        tmp_path / "out",
        "--checkpoint",
        checkpoint,
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *extra,
    )


def edited_checkpoint(source, target, *, header=None, tensors=None):
    """A copy of `source` with header entries replaced (None removes) and tensors changed."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    for key, value in (header or {}).items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    data = load_file(str(source))
    data.update(tensors or {})
    save_file(data, str(target), metadata=metadata)
    return target


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["Checkpoint not found"]),
        (b"", ["not a readable checkpoint", "corrupt, truncated or another format"]),
        (b"\x00garbage" * 100, ["not a readable checkpoint", "corrupt, truncated"]),
        ("half", ["not a readable checkpoint", "corrupt, truncated"]),
        ("folder", ["is a folder", "checkpoint file"]),
    ],
    ids=["missing", "empty", "garbage", "truncated", "folder"],
)
def test_an_unreadable_checkpoint_is_one_clear_line(
    images, tmp_path, trained_checkpoint, content, words
):
    path = tmp_path / "model.safetensors"
    if content == "half":
        raw = trained_checkpoint.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    before = snapshot(images)
    check_user_error(segment_with(images, tmp_path, path), 1, *words)
    assert not (tmp_path / "out").exists()
    assert_unchanged(before)


def test_another_safetensors_file_says_how_to_import_it(images, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.ones(2)}, str(other))
    check_user_error(
        segment_with(images, tmp_path, other), 1, "not a napari-clip-guided-sam", "weights import"
    )


@pytest.mark.parametrize(
    "header, words",
    [
        ({"base_weights": "random:abc", "base": None}, ["base-weights tag", "random:<seed>"]),
        ({"config": "{not json"}, ["damaged header", "original file"]),
        ({"config": None}, ["damaged header", "missing entry 'config'"]),
        ({"base": json.dumps({"sam": {}})}, ["damaged header", "original file"]),
    ],
    ids=["malformed-base-tag", "config-not-json", "config-missing", "base-record"],
)
def test_a_damaged_header_is_named(images, tmp_path, trained_checkpoint, header, words):
    """Defect 10: "random:abc" gave "invalid literal for int() with base 10"."""
    damaged = edited_checkpoint(trained_checkpoint, tmp_path / "damaged.safetensors", header=header)
    result = segment_with(images, tmp_path, damaged)
    check_user_error(result, 1, *words)
    assert "invalid literal" not in result.err
    with pytest.raises(CheckpointError):
        read_checkpoint(damaged)


def test_a_checkpoint_with_nan_weights_is_refused(images, tmp_path, trained_checkpoint):
    name = next(iter(load_file(str(trained_checkpoint))))
    poisoned = torch.full_like(load_file(str(trained_checkpoint))[name], float("nan"))
    nan = edited_checkpoint(
        trained_checkpoint, tmp_path / "nan.safetensors", tensors={name: poisoned}
    )
    check_user_error(
        segment_with(images, tmp_path, nan), 1, "not finite numbers", "lower learning rate"
    )


def test_a_checkpoint_of_another_preset_names_the_preset(images, tmp_path, trained_checkpoint):
    result = segment_with(images, tmp_path, trained_checkpoint, "--preset", "paper")
    check_user_error(result, 1, "trained for preset 'tiny'", "choose preset 'tiny'")


def test_a_torchscript_checkpoint_never_runs(images, tmp_path, marker_archive):
    archive, marker = marker_archive
    check_user_error(segment_with(images, tmp_path, archive), 1, "not a readable checkpoint")
    assert not marker.exists()


def test_a_torchscript_base_file_never_runs(images, tmp_path, marker_archive):
    archive, marker = marker_archive
    result = run_cli(
        "segment", images, "-c", "nucleus", "-o", tmp_path / "out", *TINY, "--sam-weights", archive
    )
    check_user_error(result, 1, "TorchScript", "safetensors")
    assert not marker.exists()


class _TouchOnLoad:
    """Unpickling it would create the file: what a malicious .pth could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_a_pickle_that_would_run_code_is_refused(images, tmp_path):
    marker = tmp_path / "MARKER_pickle_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.weight": _TouchOnLoad(marker)}, evil)
    assert not marker.exists()
    result = run_cli(
        "segment", images, "-c", "nucleus", "-o", tmp_path / "out", *TINY, "--sam-weights", evil
    )
    check_user_error(result, 1, "evil.pth")
    assert not marker.exists()
    result = run_cli(
        "weights", "import", evil, tmp_path / "imported.safetensors", "--classes", "nucleus"
    )
    assert result.code != 0 and "Traceback" not in result.err
    assert not marker.exists() and not (tmp_path / "imported.safetensors").exists()


def test_info_on_a_damaged_checkpoint_is_one_clear_line(tmp_path, trained_checkpoint):
    damaged = edited_checkpoint(
        trained_checkpoint, tmp_path / "d.safetensors", header={"card": "{bad"}
    )
    check_user_error(run_cli("info", damaged), 1, "damaged header")
