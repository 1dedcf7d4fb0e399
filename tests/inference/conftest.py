"""Data of the object workflow: a tiny model fine-tuned on disks, a disk drifting in z (the
session fixtures `disk_model` and `drifting_disk` of tests/conftest.py build them once for
the inference and widget tests); the disk model as a file and a dask LocalCluster for the
batch-on-a-cluster tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from training.conftest import disk_samples

from napari_clip_guided_sam.model.checkpoint import save_checkpoint
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.threads import cpu_threads
from napari_clip_guided_sam.training import TrainingConfig, train

DISK_SLICES = range(2, 10)  # the slices of `drifting_disk` that hold the disk


def train_disk_model():
    """The tiny preset fine-tuned for 50 steps on bright disks (class "disk", text mode):
    enough to segment a disk from text, clicks or a mask (IoU ~0.85-0.9)."""
    model = build_model("tiny", seed=0)
    config = TrainingConfig(
        epochs=100, max_steps=50, lr=1e-3, clip_lr=1e-4, device="cpu", precision="fp32"
    )
    with cpu_threads(1):  # small steps: more threads only wait for each other
        for _ in train(model, disk_samples(8, seed=1), None, config):
            pass
    return model.eval()


def disk_image(mask: np.ndarray, seed: int) -> np.ndarray:
    """A grey RGB image of `mask` as a bright object on a dark, noisy field."""
    noise = np.random.default_rng(seed).normal(0, 8, mask.shape)
    grey = np.clip(30 + 190 * mask + noise, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def drifting_disk_stack() -> tuple[np.ndarray, np.ndarray]:
    """A 12-slice z stack (RGB [Z, 48, 64, 3]) and its masks [Z, 48, 64]: a disk of radius 8
    drifting 3 px per slice to the right on slices 2-9, nothing elsewhere."""
    rows, cols = np.mgrid[:48, :64]
    masks = np.zeros((12, 48, 64), dtype=bool)
    for z in DISK_SLICES:
        masks[z] = (rows - 24) ** 2 + (cols - 15 - 3 * z) ** 2 <= 8**2
    images = np.stack([disk_image(mask, seed) for seed, mask in enumerate(masks)])
    return images, masks


@pytest.fixture(scope="module")
def disk_checkpoint(disk_model, tmp_path_factory) -> Path:
    """The disk model as a file every cluster worker and the serial reference run load."""
    return save_checkpoint(
        disk_model, tmp_path_factory.mktemp("model") / "disk.safetensors", class_names=["disk"]
    )


@pytest.fixture(scope="module")
def cluster_client():
    """A client of a dask LocalCluster of 2 worker processes of 1 thread each, per module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
