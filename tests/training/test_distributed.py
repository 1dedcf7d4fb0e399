"""Training on several processes (torchrun, DistributedDataParallel over gloo on the CPU):
2 processes of batch 1 train as 1 process of batch 2, resume either way, and only rank 0
writes and prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from safetensors.torch import load_file

from napari_clip_guided_sam.cli import EXIT_OK, main
from napari_clip_guided_sam.model.checkpoint import read_checkpoint
from napari_clip_guided_sam.training.distributed import Ranks

from .conftest import disk_samples

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="torchrun's gloo process group is tested on POSIX"
)

# 5 pairs, 1 for validation: 4 training examples, 2 steps of 2 examples per epoch; a constant
# learning rate, so that a run of 2 epochs resumed to 3 is the first 2 epochs of 3. The
# learning rates are the paper's order of magnitude. A missing gradient average (each rank
# stepping on its own example) moves the trained tensors by ~1e-4, ten times the tolerance.
# Tensors whose steps follow rounding noise are not compared (`comparable`).
ARGS = [
    "--class", "disk", "--preset", "tiny", "--device", "cpu", "--precision", "fp32",
    "--val-fraction", "0.2", "--lr", "1e-4", "--clip-lr", "1e-5", "--schedule", "constant",
]  # fmt: skip
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("disks")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for index, sample in enumerate(disk_samples(5, seed=3)):
        Image.fromarray(sample.image).save(folder / "images" / f"d{index}.png")
        tifffile.imwrite(folder / "labels" / f"d{index}.tif", sample.mask.astype(np.uint8))
    return folder


def arguments(data: Path, output: Path, *extra: str) -> list[str]:
    images, labels = str(data / "images"), str(data / "labels")
    return ["train", "--images", images, "--labels", labels, "--output", str(output), *ARGS,
            *extra]  # fmt: skip


def one_process(data: Path, output: Path, *extra: str) -> None:
    assert main(arguments(data, output, *extra)) == EXIT_OK


def two_processes(data: Path, output: Path, *extra: str) -> str:
    """`torchrun --nproc_per_node 2 -m napari_clip_guided_sam.cli train ...`; its stdout."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "napari_clip_guided_sam.cli", *arguments(data, output, *extra),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# The convolution before the dense prompt's channel LayerNorm: the loss ignores a change
# shared by its output channels, and its gradient is at the rounding noise's size here (the
# similarity maps of random weights are nearly flat), so AdamW's steps follow the noise
# (4.6e-6 to 1.2e-5 seen).
NOISE_LED = ("sam.prompt_encoder.mask_downscaling.0.",)


def comparable(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` without the parts whose AdamW steps follow rounding noise: the attention key
    biases, whose true gradient is exactly zero (softmax ignores a shift shared by all keys),
    and `NOISE_LED`. Their gradients' rounding differs between a batch of 2 and two of 1 and
    between runs of multi-threaded kernels, and AdamW turns it into steps of up to the
    learning rate (1.8e-5 to 2.9e-5 seen)."""
    if key.endswith("k_proj.bias") or key.startswith(NOISE_LED):
        return tensor[:0]
    if key.endswith("in_proj_bias"):  # [q | k | v]
        third = tensor.shape[0] // 3
        return torch.cat([tensor[:third], tensor[2 * third :]])
    return tensor


def assert_same_training(first: Path, second: Path) -> None:
    """The same trained tensors (<= TOLERANCE, key biases aside) and validation metrics."""
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(first / name), load_file(second / name)
        assert a.keys() == b.keys()
        assert any(k.endswith("in_proj_bias") for k in a)  # what `comparable` trims exists
        differences = {
            k: (comparable(k, a[k]).float() - comparable(k, b[k]).float()).abs().max().item()
            for k in a
            if comparable(k, a[k]).numel()
        }
        worst = max(differences, key=differences.__getitem__)
        assert differences[worst] <= TOLERANCE, f"{name}: {worst} differs by {differences[worst]:g}"
        meta_a, meta_b = (
            read_checkpoint(first / name).metadata,
            read_checkpoint(second / name).metadata,
        )
        assert (meta_a["epoch"], meta_a["step"]) == (meta_b["epoch"], meta_b["step"])
        assert meta_a["metrics"].keys() == meta_b["metrics"].keys()
        for key, value in meta_a["metrics"].items():
            assert meta_b["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def batch_of_two(data, runs) -> Path:
    """The reference: one process, batch 2, two epochs (4 steps)."""
    output = runs / "one_process"
    one_process(data, output, "--batch-size", "2", "--epochs", "2")
    return output


@pytest.fixture(scope="module")
def two_of_one(data, runs) -> tuple[Path, str]:
    """torchrun: two processes of batch 1, two epochs; the folder and what was printed."""
    output = runs / "two_processes"
    return output, two_processes(data, output, "--batch-size", "1", "--epochs", "2")


def test_two_processes_of_batch_one_train_as_one_of_batch_two(batch_of_two, two_of_one):
    output, printed = two_of_one
    assert_same_training(batch_of_two, output)
    assert read_checkpoint(output / "last.safetensors").metadata["step"] == 4
    # Rank 0 alone prints (and writes): one summary, one line per epoch.
    assert printed.count("2 processes of batch 1 (torchrun)") == 1
    assert printed.count("epoch 2: train loss") == 1 and printed.count("last checkpoint:") == 1


def test_a_run_resumes_on_one_process_or_on_several(data, batch_of_two, two_of_one, tmp_path):
    reference, from_two, on_two = tmp_path / "reference", tmp_path / "from_two", tmp_path / "on_two"
    shutil.copytree(batch_of_two, reference)
    shutil.copytree(two_of_one[0], from_two)
    shutil.copytree(batch_of_two, on_two)

    one_process(data, reference, "--resume", "--epochs", "3")
    # One process takes the whole batch of the run (2 x 1) without being told.
    one_process(data, from_two, "--resume", "--epochs", "3")
    two_processes(data, on_two, "--resume", "--epochs", "3")

    assert_same_training(reference, from_two)
    assert_same_training(reference, on_two)
    assert read_checkpoint(from_two / "last.safetensors").metadata["training"]["batch_size"] == 2
    assert read_checkpoint(on_two / "last.safetensors").metadata["training"]["batch_size"] == 1


def test_one_process_is_a_run_of_one_and_ranks_share_every_batch():
    one = Ranks()
    assert not one.distributed and one.is_main and list(one.positions(5)) == [0, 1, 2, 3, 4]
    assert one.mean(2.5) == 2.5 and one.from_main({"a": 1}) == {"a": 1}
    # 5 examples on 2 ranks: rank 1 repeats the first position to keep the ranks in step;
    # local batch b of every rank (size 1) together is the one-process batch b of size 2.
    first, second = Ranks(0, 2, 0).positions(5), Ranks(1, 2, 1).positions(5)
    assert list(first) == [0, 2, 4] and list(second) == [1, 3, 0]
