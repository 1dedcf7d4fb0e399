"""Shared test setup: offline hub, a deterministic tiny model, small images."""

import os
import warnings
from typing import Tuple  # noqa: UP035 - TorchScript reads typing's Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the hub from tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_weights_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's weights directory."""
    monkeypatch.setenv("CLIP_GUIDED_SAM_CACHE", str(tmp_path_factory.mktemp("weights")))


@pytest.fixture(autouse=True)
def _fixed_thread_count(monkeypatch):
    """Results do not depend on the machine's load: every unit of work uses torch's thread
    count (the policy follows the load; its own tests unset this)."""
    from napari_clip_guided_sam.model.threads import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, str(torch.get_num_threads()))


@pytest.fixture
def tiny_model():
    """The `tiny` preset with seeded random weights, in eval mode."""
    from napari_clip_guided_sam.model.factory import build_model

    return build_model("tiny", seed=0)


@pytest.fixture
def tiny_reference_config():
    """The `reference` preset's settings (released-code quirks; the text positional embedding
    trained through the redundant feature) at `tiny` size."""
    from napari_clip_guided_sam.model.config import get_preset

    tiny = get_preset("tiny")
    return get_preset("reference").replace(
        name="tiny_reference",
        sam=tiny.sam,
        clip=tiny.clip,
        **{"trainable.clip_attention_blocks": tiny.trainable.clip_attention_blocks},
    )


@pytest.fixture
def tiny_reference_model(tiny_reference_config):
    """`tiny_reference_config` with seeded random weights, in eval mode."""
    from napari_clip_guided_sam.model.factory import build_model

    return build_model(tiny_reference_config, seed=0)


@pytest.fixture
def rgb_image():
    """A 96x128 uint8 RGB image with two bright disks on a dark, noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    image = rng.integers(0, 40, size=(96, 128, 3), dtype=np.uint8)
    for cy, cx, r in ((30, 40, 14), (60, 90, 18)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 220
    return image


@pytest.fixture(scope="session")
def disk_model():
    """The tiny preset fine-tuned for 50 steps on bright disks (class "disk"); see
    tests/inference/conftest.py."""
    from inference.conftest import train_disk_model

    return train_disk_model()


@pytest.fixture(scope="session")
def drifting_disk():
    """A 12-slice RGB z stack with a disk drifting through slices 2-9, and its masks; see
    tests/inference/conftest.py."""
    from inference.conftest import drifting_disk_stack

    return drifting_disk_stack()


@pytest.fixture
def sam_input(tiny_model):
    """Two SAM-normalised random inputs for the tiny model: [2, 3, 256, 256]."""
    size = tiny_model.config.sam.image_size
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def write_stack():
    """Writes a 2-slice (or n) calibrated ZYX uint16 stack (2 µm z, 0.25 µm xy) with a bright
    square; returns its path. The same stack for the CLI and the menu tests."""
    import tifffile

    def write(path, n_slices=2, seed=0):
        rng = np.random.default_rng(seed)
        stack = rng.integers(0, 300, size=(n_slices, 40, 48)).astype(np.uint16)
        stack[:, 10:22, 12:26] += 2000
        tifffile.imwrite(
            path,
            stack,
            imagej=True,
            resolution=(4.0, 4.0),
            metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"},
        )
        return path

    return write


class _Payload(torch.nn.Module):
    """Its TorchScript `__setstate__` creates the file named in its state (torch.from_file
    with shared=True creates the file): what a malicious weights archive could do."""

    def __init__(self, path: str):
        super().__init__()
        self.weight = torch.ones(2)
        self.path = path

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:  # noqa: UP006
        return (self.path, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:  # noqa: UP006
        self.path = state[0]
        self.training = state[2]
        created = torch.from_file(state[0], shared=True, size=2, dtype=torch.uint8)
        self.weight = state[1] + 0 * created.float()


class _Carrier(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.payload = _Payload(path)

    def forward(self, x):
        return self.payload(self.linear(x))


def write_marker_archive(folder):
    """(archive, marker) in `folder`: a TorchScript file that creates `marker` if anything
    runs its code (torch.jit.load does)."""
    marker = folder / "MARKER_code_ran"
    archive = folder / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated
        torch.jit.script(_Carrier(str(marker))).save(str(archive))
    assert not marker.exists()
    return archive, marker


@pytest.fixture(scope="session")
def marker_archive(tmp_path_factory):
    """A session's (archive, marker) from `write_marker_archive`; tests assert the marker
    never appears, whatever path the archive takes."""
    return write_marker_archive(tmp_path_factory.mktemp("unsafe"))
