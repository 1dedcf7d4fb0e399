"""`clip-guided-sam info` and `weights`: model cards, the weights folder, unsafe files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_clip_guided_sam.cli import EXIT_FAILED, EXIT_OK, main
from napari_clip_guided_sam.model import weights
from napari_clip_guided_sam.model.checkpoint import read_checkpoint, save_checkpoint
from napari_clip_guided_sam.model.config import TINY_SAM
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.sam import build_sam

DSB = Path(__file__).parents[1] / "resources" / "dsb2018"
TINY_CPU = ["--preset", "tiny", "--device", "cpu", "--precision", "fp32"]
DSB_DATA = ["--images", str(DSB / "images"), "--labels", str(DSB / "labels"), "--class", "nucleus"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint trained by the CLI: two steps on the DSB samples, one held out."""
    output = tmp_path_factory.mktemp("run")
    args = ["train", *DSB_DATA, "--output", str(output), *TINY_CPU, "--max-steps", "2",
            "--val-fraction", "0.34", "--adapter-init", "identity"]  # fmt: skip
    assert main(args) == EXIT_OK
    return output / "best.safetensors"


def test_info_prints_the_complete_card_of_a_cli_trained_checkpoint(trained, capsys):
    assert main(["info", str(trained)]) == EXIT_OK
    text = capsys.readouterr().out
    for expected in (
        "preset:          tiny (SAM tiny, CLIP tiny at 128 px)",
        "adapters:        fine-tuned adapters, initialised 'identity'",
        "classes:         nucleus  (text features stored)",
        "SAM: random initialisation",
        "images: 3",
        "pixel_size: unknown",
        "lr: 0.001",
        "validation:      1 held-out sample(s)",
        "  nucleus: miou ",
        "written by:      napari-clip-guided-sam 0.1.0",
    ):
        assert expected in text, expected
    assert main(["info", str(trained), "--json"]) == EXIT_OK
    card = json.loads(capsys.readouterr().out)
    assert all(value is not None for value in card.values()), card
    assert card["training"]["settings"]["max_steps"] == 2


def test_info_on_a_checkpoint_without_card(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_checkpoint(build_model("tiny"), tmp_path / "m.safetensors", class_names=["a"])
    with safe_open(str(path), framework="pt") as handle:
        header = {k: v for k, v in handle.metadata().items() if k not in ("card", "base")}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=header)
    assert main(["info", str(tmp_path / "old.safetensors")]) == EXIT_OK
    text = capsys.readouterr().out
    assert "no model card" in text and "preset:          tiny" in text


def test_segment_says_whether_the_model_is_zero_shot(tmp_path, trained, capsys, write_stack):
    stack = write_stack(tmp_path / "cells.tif")
    args = ["segment", str(stack), *TINY_CPU, "--no-progress"]
    assert main([*args, "-c", "cell", "-o", str(tmp_path / "a")]) == EXIT_OK
    assert "preset tiny, zero-shot (no fine-tuned adapters)" in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "b"), "--checkpoint", str(trained)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "best.safetensors (preset tiny, fine-tuned adapters, classes nucleus)" in out


def test_custom_sam_weights_are_named_as_not_official(tmp_path, capsys, write_stack):
    torch.save(build_sam(TINY_SAM).state_dict(), tmp_path / "my_sam.pth")
    stack = write_stack(tmp_path / "cells.tif")
    args = ["segment", str(stack), "-c", "cell", *TINY_CPU, "--no-progress"]
    assert main([*args, "--sam-weights", str(tmp_path / "my_sam.pth")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "base weights: SAM from a custom file (not official) my_sam.pth, sha256" in out


def test_weights_verify_flags_files_that_are_not_official(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    assert main(["weights", "verify"]) == EXIT_OK
    assert "sam_vit_b_01ec64.pth" in capsys.readouterr().out  # listed as missing
    (tmp_path / "ViT-B-16.pt").write_bytes(b"not the official file")
    assert main(["weights", "verify"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "ViT-B-16.pt" in out and "WRONG HASH" in out
    assert weights.CLIP_WEIGHTS["ViT-B-16"].sha256 in out


def test_weights_fetch_offline_lists_every_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(weights, "network_available", lambda url, timeout=3.0: False)
    assert main(["weights", "fetch"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "sam_vit_b_01ec64.pth" in err and "ViT-B-16.pt" in err and str(tmp_path) in err


@pytest.mark.parametrize(
    "command",
    [
        ["weights", "import", "{archive}", "{out}"],
        ["info", "{archive}"],
        ["segment", "{image}", "-c", "cell", "--checkpoint", "{archive}", *TINY_CPU],
        ["evaluate", "--checkpoint", "{archive}", *DSB_DATA, "--device", "cpu"],
        ["segment", "{image}", "-c", "cell", "--clip-weights", "{archive}", *TINY_CPU],
    ],
    ids=["weights-import", "info", "segment-checkpoint", "evaluate-checkpoint", "clip-weights"],
)
def test_a_torchscript_file_never_runs_on_any_command(
    command, marker_archive, tmp_path, capsys, write_stack
):
    archive, marker = marker_archive
    values = {"archive": archive, "out": tmp_path / "out.safetensors",
              "image": write_stack(tmp_path / "cells.tif")}  # fmt: skip
    args = [part.format(**{k: str(v) for k, v in values.items()}) for part in command]
    assert main(args) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "TorchScript" in err or "not a readable checkpoint" in err, err
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_train_records_the_adapter_init_and_base_of_the_run(trained):
    checkpoint = read_checkpoint(trained)
    assert checkpoint.config.adapters.init == "identity"
    assert checkpoint.card.training_data["images"] == 3
    assert checkpoint.card.validation["per_class"]["nucleus"]["fg_iou"] is not None


def test_info_system_says_how_many_threads_a_unit_of_work_gets(monkeypatch, capsys):
    from napari_clip_guided_sam.model.threads import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")
    assert main(["info", "--system", "--device", "cpu"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "CPU threads: 1 for a unit of work now" in out
    assert f"fixed by {THREADS_ENV}" in out
    monkeypatch.setenv(THREADS_ENV, "many")
    assert main(["info", "--system", "--device", "cpu"]) == EXIT_FAILED
    assert f"{THREADS_ENV}='many' is not a thread count" in capsys.readouterr().err
