"""`clip-guided-sam train` and `evaluate`: end to end on real nuclei, exit codes, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clip_guided_sam._locking import LOCK_NAME
from napari_clip_guided_sam.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from napari_clip_guided_sam.model.checkpoint import load_model, read_checkpoint

DSB = Path(__file__).parents[1] / "resources" / "dsb2018"
TINY_CPU = ["--preset", "tiny", "--device", "cpu", "--precision", "fp32"]


def train_args(images, labels, output, *extra) -> list[str]:
    return [
        "train", "--images", str(images), "--labels", str(labels), "--class", "nucleus",
        "--output", str(output), *TINY_CPU, *extra,
    ]  # fmt: skip


def write_pair(folder: Path, name: str, shape=(40, 56), label_shape=None, values=(1,)):
    """A PNG image with bright squares and a uint16 TIFF label image of the squares."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    labels = np.zeros(label_shape or shape, dtype=np.uint16)
    for index, value in enumerate(values):
        labels[5 + 12 * index : 14 + 12 * index, 8:20] = value
    image = np.full((*shape, 3), 20, dtype=np.uint8)
    image[: labels.shape[0], : labels.shape[1]][labels[: shape[0], : shape[1]] > 0] = 220
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    tifffile.imwrite(folder / "labels" / f"{name}.tif", labels)


def test_train_then_evaluate_on_nuclei(tmp_path, capsys):
    output = tmp_path / "run"
    code = main(train_args(DSB / "images", DSB / "labels", output, "--epochs", "2",
                           "--val-fraction", "0.34"))  # fmt: skip
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert "best checkpoint" in captured.out and "epoch 2: train loss" in captured.out
    assert {p.name for p in output.iterdir()} == {
        "best.safetensors", "last.safetensors", "last.state.safetensors", LOCK_NAME,
    }  # fmt: skip
    model, checkpoint = load_model(output / "best.safetensors")
    assert checkpoint.class_names == ["nucleus"] and model.config.name == "tiny"

    report = tmp_path / "scores.json"
    code = main([
        "evaluate", "--checkpoint", str(output / "best.safetensors"), "--images",
        str(DSB / "images"), "--labels", str(DSB / "labels"), "--class", "nucleus",
        "--device", "cpu", "--precision", "fp32", "--json", str(report),
    ])  # fmt: skip
    assert code == EXIT_OK
    scores = json.loads(report.read_text())
    assert scores["metrics"]["n_samples"] == 3 and 0 <= scores["metrics"]["fg_iou"] <= 1
    assert "miou" in capsys.readouterr().out


def test_existing_output_needs_resume_or_overwrite(tmp_path, capsys):
    for index in range(3):
        write_pair(tmp_path, f"p{index}")
    images, labels, output = tmp_path / "images", tmp_path / "labels", tmp_path / "run"
    assert main(train_args(images, labels, output, "--epochs", "1")) == EXIT_OK
    first = read_checkpoint(output / "last.safetensors").metadata["step"]

    assert main(train_args(images, labels, output, "--epochs", "1")) == EXIT_USAGE
    assert "--resume" in capsys.readouterr().err

    assert main(train_args(images, labels, output, "--epochs", "2", "--resume")) == EXIT_OK
    assert read_checkpoint(output / "last.safetensors").metadata["step"] == 2 * first
    assert "epoch 2" in capsys.readouterr().out

    assert main(train_args(images, labels, output, "--epochs", "1", "--overwrite")) == EXIT_OK
    assert read_checkpoint(output / "last.safetensors").metadata["step"] == first


def test_bad_pairs_are_skipped_and_listed(tmp_path, capsys):
    for index in range(3):
        write_pair(tmp_path, f"good{index}")
    write_pair(tmp_path, "wrong_shape", label_shape=(30, 30))
    write_pair(tmp_path, "unknown_value", values=(1, 7))
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "labels" / "broken.tif").write_bytes(b"not a tiff")
    code = main([
        "train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
        "--class-map", "1=square", "--output", str(tmp_path / "run"), *TINY_CPU,
        "--epochs", "1", "--val-fraction", "0",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    skipped = err[err.index("file(s) skipped") :]
    assert "3 file(s) skipped" in err
    for name in ("wrong_shape", "unknown_value", "broken"):
        assert name in skipped


@pytest.mark.parametrize(
    "case, expected, message",
    [
        ("empty", EXIT_FAILED, "no images"),
        ("all-mismatched", EXIT_FAILED, "no usable image/label pair"),
        ("bad-class-map", EXIT_USAGE, "VALUE=NAME"),
        ("missing-folder", EXIT_FAILED, "not a folder"),
    ],
)
def test_bad_input_exit_codes(tmp_path, capsys, case, expected, message):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    args = train_args(images, labels, tmp_path / "run")
    if case == "all-mismatched":
        write_pair(tmp_path, "a", label_shape=(10, 10))
    if case == "bad-class-map":
        write_pair(tmp_path, "a")
        args[args.index("--class") : args.index("--class") + 2] = ["--class-map", "nucleus"]
    if case == "missing-folder":
        args[args.index("--images") + 1] = str(tmp_path / "nowhere")
    assert main(args) == expected
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_unwritable_output_fails_before_training(tmp_path, capsys):
    write_pair(tmp_path, "a")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code = main(train_args(tmp_path / "images", tmp_path / "labels", blocker / "run"))
    assert code == EXIT_FAILED
    assert "Cannot write checkpoints" in capsys.readouterr().err


def test_ctrl_c_exits_130_and_keeps_the_last_checkpoint(tmp_path):
    for index in range(3):
        write_pair(tmp_path, f"p{index}")
    output = tmp_path / "run"
    command = [sys.executable, "-m", "napari_clip_guided_sam.cli"]
    args = train_args(tmp_path / "images", tmp_path / "labels", output, "--epochs", "100000")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (output / "last.state.safetensors").exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED
    assert "--resume" in err
    model, checkpoint = load_model(output / "last.safetensors")
    assert checkpoint.metadata["step"] >= 2


def test_class_map_from_an_exported_json_file(tmp_path, capsys):
    write_pair(tmp_path, "a", values=(1, 2))
    write_pair(tmp_path, "b", values=(2, 1))
    class_map = tmp_path / "class_map.json"
    class_map.write_text(json.dumps({"classes": {"1": "nucleus", "2": "cell"}}))
    args = train_args(
        tmp_path / "images", tmp_path / "labels", tmp_path / "run", "--max-steps", "1"
    )
    args[args.index("--class") : args.index("--class") + 2] = ["--class-map", str(class_map)]
    assert main(args) == EXIT_OK, capsys.readouterr().err
    assert read_checkpoint(tmp_path / "run" / "last.safetensors").class_names == ["nucleus", "cell"]


@pytest.mark.parametrize("bad", ["1=nucleus,2=nucleus", "nucleus", "missing.json"])
def test_bad_class_maps_are_usage_errors(tmp_path, capsys, bad):
    write_pair(tmp_path, "a")
    args = train_args(tmp_path / "images", tmp_path / "labels", tmp_path / "run")
    args[args.index("--class") : args.index("--class") + 2] = ["--class-map", bad]
    assert main(args) == EXIT_USAGE
    assert "--class-map" in capsys.readouterr().err


def test_a_device_typo_is_a_usage_error_before_any_work(tmp_path, capsys):
    args = train_args(tmp_path / "missing", tmp_path / "missing", tmp_path / "run")
    args[args.index("--device") + 1] = "gpu"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == EXIT_USAGE
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_a_single_image_says_there_is_no_validation_and_shows_preparation(tmp_path, capsys):
    write_pair(tmp_path, "only")
    code = main(train_args(tmp_path / "images", tmp_path / "labels", tmp_path / "run",
                           "--max-steps", "1"))  # fmt: skip
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert "No validation: 1 annotated slice is too few" in captured.out
    assert "preparing slices" in captured.err
    assert "best checkpoint:" not in captured.out


FOUR_CLASSES = "0=pore,1=clay,2=quartz,3=pyrite"


def write_fully_labelled(folder: Path, count: int = 3) -> None:
    """Images whose every pixel has one of four classes (0-3, label 0 included), each class
    its own grey level, plus a band of unannotated pixels (255)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        labels = np.zeros((48, 48), np.uint8)
        labels[:, 24:] = 1
        labels[24:, :24] = 2
        labels[30 + index : 40 + index, 30:40] = 3  # small: about 4 % of the pixels
        labels[:4] = 255
        grey = np.choose(np.minimum(labels, 4), [30, 90, 150, 220, 0]).astype(np.uint8)
        grey = np.clip(grey + rng.normal(0, 6, grey.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(
            folder / "images" / f"f{index}.png"
        )
        tifffile.imwrite(folder / "labels" / f"f{index}.tif", labels)


def test_fully_labelled_four_class_map_trains_every_class(tmp_path, capsys):
    write_fully_labelled(tmp_path)
    images, labels, output = tmp_path / "images", tmp_path / "labels", tmp_path / "run"
    args = train_args(images, labels, output, "--max-steps", "2", "--val-fraction", "0.34")
    args[args.index("--class") : args.index("--class") + 2] = ["--class-map", FOUR_CLASSES]
    assert main(args) == EXIT_USAGE  # label 0 is background unless said otherwise
    assert "label 0" in capsys.readouterr().err

    args += ["--background", "none", "--ignore-index", "255"]
    assert main(args) == EXIT_OK, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "3 image/label pair(s), 12 sample(s)" in out  # every slice: all four classes
    for name in ("pore", "clay", "quartz", "pyrite"):
        assert f"{name} IoU" in out
    checkpoint = read_checkpoint(output / "last.safetensors")
    assert checkpoint.class_names == ["pore", "clay", "quartz", "pyrite"]
    assert checkpoint.metadata["label_table"] == {
        "values": {"pore": 0, "clay": 1, "quartz": 2, "pyrite": 3},
        "unlabelled": 255,
    }
    per_class = checkpoint.card.validation["per_class"]
    assert set(per_class) == {"pore", "clay", "quartz", "pyrite"}
    assert all(0 <= scores["iou"] <= 1 for scores in per_class.values())

    report = tmp_path / "scores.json"
    evaluate = [
        "evaluate", "--checkpoint", str(output / "last.safetensors"), "--images", str(images),
        "--labels", str(labels), "--class-map", FOUR_CLASSES, "--background", "none",
        "--ignore-index", "255", "--device", "cpu", "--precision", "fp32", "--json", str(report),
    ]  # fmt: skip
    assert main(evaluate) == EXIT_OK
    out = capsys.readouterr().out
    assert "iou/pyrite" in out and "dice/pyrite" in out
    metrics = json.loads(report.read_text())["metrics"]
    class_iou = [metrics[f"iou/{n}"] for n in ("pore", "clay", "quartz", "pyrite")]
    present = [value for value in class_iou if value is not None]
    assert metrics["miou"] == pytest.approx(np.mean(present))  # mean over classes that appear


def test_evaluate_prints_instance_scores_for_a_model_and_for_label_images(tmp_path, capsys):
    report = tmp_path / "model.json"
    code = main([
        "evaluate", "--preset", "tiny", "--images", str(DSB / "images"), "--labels",
        str(DSB / "labels"), "--class", "nucleus", "--instances", "watershed", "--device", "cpu",
        "--precision", "fp32", "--json", str(report),
    ])  # fmt: skip
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "DSB score (mSA)" in out and "F1@0.5" in out
    scores = json.loads(report.read_text())
    assert len(scores["instances"]["rows"]) == 3 and len(scores["per_image"]) == 3
    assert len(scores["instances"]["overall"]["per_threshold"]) == 10

    predictions = tmp_path / "segmented"
    predictions.mkdir()
    for path in sorted((DSB / "labels").glob("*.tif")):
        truth = tifffile.imread(path)
        merged = (truth > 0).astype(np.uint8)  # one "object": everything merged
        tifffile.imwrite(predictions / f"{path.stem}_labels.tif", merged)
    args = ["evaluate", "--predictions", str(predictions), "--labels", str(DSB / "labels"),
            "--class", "nucleus", "--json", str(report)]  # fmt: skip
    assert main(args) == EXIT_OK
    merged_scores = json.loads(report.read_text())["instances"]["overall"]
    assert main([*args, "--instances", "watershed"]) == EXIT_OK
    split_scores = json.loads(report.read_text())["instances"]["overall"]
    assert json.loads(report.read_text())["metrics"]["fg_iou"] == 1.0  # pixels are perfect
    assert split_scores["dsb_score"] > merged_scores["dsb_score"]  # splitting finds nuclei
    assert "DSB score (mSA)" in capsys.readouterr().out


def test_a_time_budget_without_epochs_plans_the_run_by_the_clock(tmp_path, capsys):
    write_pair(tmp_path, "a")
    write_pair(tmp_path, "b")
    options = ["--time-budget", "1", "--val-fraction", "0", "--augment", "flips,blur"]
    args = train_args(tmp_path / "images", tmp_path / "labels", tmp_path / "run", *options)
    assert main(args) == EXIT_OK, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "epochs: the time budget, time budget 1 s" in out
    assert "lr 0.001 (cosine)" in out and "augment flips,blur" in out
    assert "finished (time budget used)" in out
    settings = read_checkpoint(tmp_path / "run" / "last.safetensors").card.training["settings"]
    assert settings["epochs"] is None and settings["augment_blur"] is True
    assert main([*args[:-2], "--augment", "sharpen", "--overwrite"]) == EXIT_USAGE
    assert "unknown sharpen" in capsys.readouterr().err


def test_cpu_friendly_options_reach_the_model_and_the_run(tmp_path, capsys):
    from napari_clip_guided_sam.training.state import load_state

    output = tmp_path / "run"
    code = main(train_args(
        DSB / "images", DSB / "labels", output, "--max-steps", "2", "--image-size", "128",
        "--adapter-blocks", "2", "--clip-trainable-blocks", "1", "--checkpointing", "on",
        "--prefix-cache-mb", "64", "--prefix-cache-disk-mb", "0", "--augment-variants", "3",
    ))  # fmt: skip
    assert code == EXIT_OK, capsys.readouterr().err
    config = read_checkpoint(output / "last.safetensors").config
    assert (config.sam.image_size, config.sam.base_image_size) == (128, 256)
    assert config.adapters.blocks == (2, 3) and config.trainable.clip_attention_blocks == 1
    settings = load_state(output / "last.state.safetensors").info["training_config"]
    assert settings["activation_checkpointing"] == "on" and settings["augment_variants"] == 3
    assert (settings["prefix_cache_mb"], settings["prefix_cache_disk_mb"]) == (64, 0)

    # A resumed run keeps its architecture; another one is refused.
    args = train_args(DSB / "images", DSB / "labels", output, "--resume", "--max-steps", "3")
    assert main(args) == EXIT_OK, capsys.readouterr().err
    assert main([*args, "--adapter-blocks", "3"]) != EXIT_OK
    assert "leave them out to resume" in capsys.readouterr().err


def test_estimate_prints_time_and_memory_without_training(tmp_path, capsys):
    output = tmp_path / "run"
    args = train_args(DSB / "images", DSB / "labels", output, "--adapter-blocks", "2")
    assert main([*args, "--estimate", "--epochs", "3"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "estimate: about" in captured.out and "peak memory about" in captured.out
    assert "3 epoch(s) x 2 step(s)" in captured.out and "computed 4 time(s)" in captured.out
    assert not output.exists() or not any(output.iterdir())

    # A run planned by its time budget: as many epochs as fit, no more time than the budget.
    assert main([*args, "--estimate", "--time-budget", "3600"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "as many epochs as fit in 3600 s" in captured.err
    assert "estimate: about" in captured.out and "epoch(s) x 2 step(s)" in captured.out


def test_compute_settings_out_of_range_name_their_option(tmp_path, capsys):
    args = train_args(DSB / "images", DSB / "labels", tmp_path / "run", "--max-steps", "1")
    for option, value in [
        ("--prefix-cache-mb", "-1"),
        ("--prefix-cache-disk-mb", "-5"),
        ("--augment-variants", "-1"),
    ]:
        assert main([*args, option, value]) == EXIT_USAGE
        assert f"{option}: " in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
