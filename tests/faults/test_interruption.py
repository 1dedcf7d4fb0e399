"""Interruptions: Ctrl-C and kill -9 mid-train and mid-batch, then resume or rerun.

Defect 7 of issue 9 (label spools and half-written checkpoint temporaries stayed forever
after a kill) is pinned here: a rerun or a resume removes the project's own stale
temporaries in its output folder, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

from napari_clip_guided_sam._atomic import TEMP_SUFFIX, is_temporary
from napari_clip_guided_sam.model.checkpoint import read_checkpoint

from .helpers import (
    TINY,
    assert_unchanged,
    cli_command,
    cli_environment,
    run_cli,
    snapshot,
    train_args,
    write_pairs,
    write_png,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")


def wait_for(condition, process, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def leave_temporaries_of_a_killed_writer(folder: Path, *names: str) -> list[Path]:
    """Temporaries exactly as a writer killed mid-write leaves them: made by the project's
    own naming rule in another process, which is then killed with SIGKILL."""
    code = (
        "import sys, time; from napari_clip_guided_sam._atomic import temporary_file\n"
        f"for name in {list(names)!r}:\n"
        f"    kind = 'spool' if name.endswith('.tif') else 'tmp'\n"
        f"    handle, path = temporary_file({os.fspath(folder)!r}, name, kind)\n"
        "    print(path, flush=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_environment()
    )
    lines = [process.stdout.readline().strip() for _ in names]
    assert process.stdout.readline().strip() == "ready"
    process.kill()
    process.wait()
    paths = [Path(line) for line in lines]
    assert all(p.is_file() and is_temporary(p.name) for p in paths)
    return paths


def not_ours(folder: Path) -> list[Path]:
    """Files that look like temporaries but do not follow the project's rule."""
    paths = [
        folder / ".last.safetensors.abc123.tmp",
        folder / f"notes{TEMP_SUFFIX}.txt",
        folder / f".a.tif.tmp.000000-1.abcdefgh{TEMP_SUFFIX}",
    ]
    for path in paths:
        path.write_text("the user's")
    return paths


def test_ctrl_c_mid_train_exits_130_and_resume_finishes(tmp_path):
    images, labels = write_pairs(tmp_path, count=2)
    run = tmp_path / "run"
    args = [
        *train_args(images, labels, run),
        "--val-fraction",
        "0",
        "--checkpoint-every",
        "1",
    ]
    process = subprocess.Popen(
        cli_command(*args, "--epochs", "100000"),
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for((run / "last.state.safetensors").exists, process, "a saved state")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err
    assert "--resume" in err and "is intact" in err
    step = read_checkpoint(run / "last.safetensors").metadata["step"]
    result = run_cli(*args, "--resume", "--max-steps", str(step + 1))
    assert result.code == 0, result.err
    assert read_checkpoint(run / "last.safetensors").metadata["step"] == step + 1


def test_kill_mid_train_then_resume_removes_only_our_stale_temporaries(tmp_path):
    images, labels = write_pairs(tmp_path, count=2)
    run = tmp_path / "run"
    args = [
        *train_args(images, labels, run),
        "--val-fraction",
        "0",
    ]
    assert run_cli(*args, "--max-steps", "1").code == 0
    stale = leave_temporaries_of_a_killed_writer(run, "last.safetensors", "last.state.safetensors")
    others = not_ours(run)
    before = snapshot(run)
    result = run_cli(*args, "--resume", "--max-steps", "2")
    assert result.code == 0, result.err
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "the user's" for p in others)
    assert read_checkpoint(run / "last.safetensors").metadata["step"] == 2
    assert all(name in before for name in map(os.fspath, others))


def test_kill_mid_batch_then_rerun_skips_finished_files_and_cleans_up(tmp_path):
    folder = tmp_path / "in"
    for index in range(6):
        write_png(folder / f"img{index}.png", 64, 64, seed=index)
    output = tmp_path / "out"
    process = subprocess.Popen(
        cli_command("segment", folder, "-c", "nucleus", "-o", output, "--no-progress", *TINY),
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("done "):
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    finished = sorted(output.glob("*_labels.tif"))
    assert 1 <= len(finished) < 6
    for path in finished:  # every file at an output path is complete
        assert tifffile.imread(path).shape == (64, 64)
    stale = leave_temporaries_of_a_killed_writer(output, "img5_labels.tif", "segment_report.csv")
    others = not_ours(output)
    before = snapshot(*finished)
    result = run_cli("segment", folder, "-c", "nucleus", "-o", output, "--no-progress", *TINY)
    assert result.code == 0, result.err
    assert result.out.count("output exists") == len(finished)
    assert_unchanged(before)
    assert len(list(output.glob("*_labels.tif"))) == 6
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "the user's" for p in others)


def test_ctrl_c_mid_batch_exits_130_and_keeps_finished_outputs(tmp_path):
    folder = tmp_path / "in"
    for index in range(6):
        write_png(folder / f"img{index}.png", 64, 64, seed=index)
    output = tmp_path / "out"
    process = subprocess.Popen(
        cli_command("segment", folder, "-c", "nucleus", "-o", output, "--no-progress", *TINY),
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("done "):
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err and "interrupted" in err
    assert not [p for p in output.iterdir() if is_temporary(p.name)]
    for path in output.glob("*_labels.tif"):
        assert tifffile.imread(path).shape == (64, 64)
