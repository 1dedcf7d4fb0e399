"""Outputs that cannot be written, or must not be: inputs, earlier outputs, read-only and full
disks.

Defects of issue 9 pinned here: 3 (`segment in -o in --allow-same-folder --suffix ''
--overwrite` wrote a.png's labels over a.tif), 4 (a failure in writing the report lost the
per-file results), 5 (a full disk while saving a training checkpoint printed a traceback and
left no resume state) and 10 ("File exists" when the parent of the path is a file).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clip_guided_sam.model.checkpoint import read_checkpoint
from napari_clip_guided_sam.training.state import read_state_info

from .helpers import (
    assert_unchanged,
    check_user_error,
    fill_disk,
    mounted_tmpfs,
    run_cli,
    segment_args,
    snapshot,
    train_args,
    write_pairs,
    write_png,
)


def segment(source: Path, output: Path, *extra: str):
    return run_cli(*segment_args(source, output, *extra))


def rows(output: Path) -> dict[str, dict]:
    with open(output / "segment_report.csv", encoding="utf-8", newline="") as handle:
        return {Path(r["input"]).name: r for r in csv.DictReader(handle)}


def test_an_input_is_never_written_over_whatever_the_flags(tmp_path):
    """Defect 3: a.png's labels landed on a.tif."""
    folder = tmp_path / "in"
    write_png(folder / "a.png")
    tifffile.imwrite(folder / "a.tif", np.full((40, 48), 7, np.uint16))
    before = snapshot(folder)
    result = segment(folder, folder, "--allow-same-folder", "--suffix", "", "--overwrite")
    assert result.code == 1 and "Traceback" not in result.err
    report = rows(folder)
    assert report["a.png"]["status"] == report["a.tif"]["status"] == "failed"
    assert "would replace the input a.tif" in report["a.png"]["reason"]
    assert "would replace itself" in report["a.tif"]["reason"]
    assert "inputs are never overwritten" in result.err
    assert_unchanged(before)


def test_two_inputs_never_share_one_output(tmp_path):
    folder = tmp_path / "in"
    write_png(folder / "a.png")
    tifffile.imwrite(folder / "a.tif", np.full((40, 48, 3), 90, np.uint8))
    result = segment(folder, tmp_path / "out", "--overwrite")
    assert result.code == 1
    report = rows(tmp_path / "out")
    assert report["a.png"]["status"] == "done"
    assert report["a.tif"]["status"] == "failed"
    assert "already written for a.png" in report["a.tif"]["reason"]


def test_earlier_outputs_are_kept_without_overwrite(images, tmp_path):
    output = tmp_path / "out"
    assert segment(images, output).code == 0
    (output / "notes.txt").write_text("the user's own file")
    before = snapshot(images, output)
    before.pop(os.fspath(output / "segment_report.csv"))
    before.pop(os.fspath(output / "segment_report.json"))
    result = segment(images, output)
    assert result.code == 0 and "skipped a.png: output exists" in result.out
    assert_unchanged(before)


def test_the_input_folder_as_output_is_refused_without_the_flag(images):
    before = snapshot(images)
    check_user_error(segment(images, images), 1, "is the input folder", "--allow-same-folder")
    assert_unchanged(before)


def test_an_output_folder_that_is_a_file_says_so(images, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for output in (blocker, blocker / "out"):
        result = segment(images, output)
        check_user_error(result, 1, f"{blocker} is a file, not a folder", "choose another")
    assert blocker.read_text() == "not a folder"


def test_a_training_output_below_a_file_says_so(tmp_path):
    """Defect 10: "File exists" for a path whose parent is a regular file."""
    images, labels = write_pairs(tmp_path, count=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli(
        *train_args(images, labels, blocker / "run"),
    )
    check_user_error(result, 1, "Cannot write checkpoints", "is a file, not a folder")
    assert "File exists" not in result.err


def test_a_report_that_cannot_be_written_keeps_every_result(images, tmp_path):
    """Defect 4: the per-file results are printed as they come; the run says the report
    failed and exits 1, and the label files are complete."""
    output = tmp_path / "out"
    (output / "segment_report.csv").mkdir(parents=True)  # the report's place is taken
    result = segment(images, output)
    check_user_error(result, 1, "cannot write the report", "listed above")
    assert "done a.png -> " in result.out and "done b.png -> " in result.out
    for name in ("a_labels.tif", "b_labels.tif"):
        assert tifffile.imread(output / name).shape == (40, 48)


def test_a_read_only_output_folder_fails_before_any_work(images, tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "1m", read_only=True) as read_only:
        before = snapshot(images)
        result = segment(images, read_only / "out")
        check_user_error(result, 1, "cannot create the folder", "read-only", "writable")
        assert_unchanged(before)


def test_a_full_disk_stops_the_batch_and_a_rerun_finishes(images, tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "256k") as disk:
        output = disk / "out"
        output.mkdir()
        filler = fill_disk(disk)
        result = segment(images, output)
        assert result.code == 1 and "Traceback" not in result.err
        assert "disk full" in result.err and "free some space and run again" in result.err
        assert not list(output.glob("*.tif"))  # nothing partial
        filler.unlink()
        assert segment(images, output).code == 0
        assert {p.name for p in output.glob("*.tif")} == {"a_labels.tif", "b_labels.tif"}
        assert not [p for p in output.iterdir() if p.name.endswith(".cgsam-tmp")]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_run_resumable(tmp_path):
    """Defect 5: a raw traceback and no resume state; now a clear message, the previous
    checkpoint and state intact, and --resume continues once there is space."""
    images, labels = write_pairs(tmp_path, count=2)
    with mounted_tmpfs(tmp_path / "disk", "12m") as disk:
        run = disk / "run"
        args = [
            *train_args(images, labels, run),
            "--val-fraction",
            "0",
        ]
        assert run_cli(*args, "--max-steps", "1").code == 0
        before = snapshot(run)
        filler = fill_disk(disk, leave=256 * 1024)  # room to start, not for a checkpoint
        result = run_cli(*args, "--max-steps", "2", "--resume")
        check_user_error(result, 1, "the disk is full", "free some space", "--resume")
        assert "previous checkpoint and training state (step 1) are complete" in result.err
        assert_unchanged(before)
        assert not [p for p in run.iterdir() if p.name.endswith(".cgsam-tmp")]
        filler.unlink()
        assert run_cli(*args, "--max-steps", "2", "--resume").code == 0
        assert read_checkpoint(run / "last.safetensors").metadata["step"] == 2
        assert read_state_info(run / "last.state.safetensors")["n_train"] == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_input_that_is_neither_file_nor_folder_is_named(tmp_path):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    check_user_error(segment(fifo, tmp_path / "out"), 1, "pipe.tif", "neither a file nor a folder")
