"""The fault catalogue's helpers: tiny data, the CLI run in-process or as a subprocess, small
file systems (full, read-only), and the checks every case makes.

Every case asserts (see :func:`check_user_error`): the exit code; that the first ``error:``
line names the problem and the fix; that no traceback reaches the user; and (with
:func:`snapshot`) that no input and no earlier output changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_clip_guided_sam._locking import LOCK_NAME
from napari_clip_guided_sam.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--preset", "tiny", "--device", "cpu", "--precision", "fp32"]


# ----------------------------------------------------------------------------- data
def bright_square_image(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 RGB noise with a bright square (the "nucleus")."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = 220
    return image


def square_labels(height: int = 40, width: int = 48, value: int = 1) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.int32)
    labels[height // 4 : height // 2, width // 4 : width // 2] = value
    return labels


def write_png(path: Path, height: int = 40, width: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(bright_square_image(height, width, seed)).save(path)
    return path


def write_pairs(root: Path, count: int = 2, labels=None, name="p") -> tuple[Path, Path]:
    """`count` image/label pairs in root/images and root/labels; `labels` overrides the
    label array of every pair."""
    images, label_dir = root / "images", root / "labels"
    for index in range(count):
        write_png(images / f"{name}{index}.png", seed=index)
        array = square_labels() if labels is None else labels
        label_dir.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(label_dir / f"{name}{index}.tif", array)
    return images, label_dir


# ----------------------------------------------------------------------------- state
def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders` (recursively), by path; the run lock, whose
    holder record every run rewrites, is left out."""
    hashes = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and path.name != LOCK_NAME:
                hashes[os.fsdecode(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def assert_unchanged(before: dict[str, str]) -> None:
    """Every file of an earlier :func:`snapshot` still exists with the same content."""
    for name, digest in before.items():
        path = Path(name)
        assert path.is_file(), f"{name} disappeared"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{name} changed"


# ----------------------------------------------------------------------------- the CLI
@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The first line of the error message: ours start with ``error:`` (or ``FAILED``
        for one file of a batch), argparse's with ``clip-guided-sam COMMAND: error:``."""
        lines = self.err.splitlines()
        return next((x for x in lines if "error:" in x or x.startswith("FAILED ")), "")


def train_args(images, labels, output, *extra, classes=("--class", "nucleus")) -> list:
    """`train` arguments for the tiny preset on the CPU."""
    return ["train", "--images", images, "--labels", labels, *classes, "--output", output,
            *TINY, *extra]  # fmt: skip


def segment_args(source, output, *extra, classes=("-c", "nucleus")) -> list:
    """`segment` arguments for the tiny preset on the CPU, without a progress bar."""
    return ["segment", source, *classes, "-o", output, "--no-progress", *TINY, *extra]


def run_cli(*args: str | os.PathLike) -> Result:
    """`clip-guided-sam ARGS` in this process; an exception escaping `main` (what the user
    would see as a traceback) fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([os.fspath(a) for a in args])
        except SystemExit as exit_:  # argparse's usage errors
            code = int(exit_.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def cli_command(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "napari_clip_guided_sam.cli", *map(os.fspath, args)]


def cli_environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_cli_process(*args: str | os.PathLike, timeout: float = 120, **env: str) -> Result:
    """`clip-guided-sam ARGS` as a separate process, as a user runs it."""
    done = subprocess.run(
        cli_command(*args),
        capture_output=True,
        env=cli_environment(**env),
        timeout=timeout,
    )
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
    )


def check_user_error(result: Result, code: int, *words: str) -> None:
    """A user error: exit `code`, the first error line holds every one of `words` (the
    problem and the fix), and no traceback."""
    assert result.code == code, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err + result.out, result.err[-2000:]
    line = result.error_line
    assert line, f"no error line in: {result.err[-2000:]}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in the error line {line!r}"


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str, read_only: bool = False):
    """A small tmpfs at `folder` (a full disk, or a read-only one); skips the test where
    mounting is not allowed (not root, no mount namespace)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", os.fspath(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", os.fspath(folder)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder`, all but `leave` bytes; returns the filler file."""
    filler = folder / "filler.bin"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        block = 1 << 20
        while block:
            try:
                os.write(handle, bytes(block))
            except OSError:
                block //= 2
    finally:
        os.close(handle)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
