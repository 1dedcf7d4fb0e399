"""Base weights: where they live, how they are fetched and checked, how they load
(docs/architecture.md, "Presets and weights").

Official files are cached in one directory (`CLIP_GUIDED_SAM_CACHE`, else the user cache
directory). A user behind a firewall drops the files there; without network the error says
exactly which file to put where, at once, instead of retrying.
"""

from __future__ import annotations

import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import platformdirs
import torch
from torch import nn

CACHE_ENV = "CLIP_GUIDED_SAM_CACHE"


class WeightsError(RuntimeError):
    """Base weights are missing, corrupt or of the wrong architecture."""


@dataclass(frozen=True)
class WeightFile:
    """One official weight file: where it comes from and how to recognise it."""

    filename: str
    url: str
    sha256: str
    size: int | None = None  # bytes, when known

    def describe(self) -> str:
        return f"{self.filename} (sha256 {self.sha256[:12]}…) from {self.url}"


SAM_WEIGHTS: dict[str, WeightFile] = {
    "vit_b": WeightFile(
        "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375_042_383,
    ),
    "vit_l": WeightFile(
        "sam_vit_l_0b3195.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": WeightFile(
        "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}

# OpenAI's files (the `openai` tag of open_clip); the sha256 is part of OpenAI's URL.
_OPENAI = "https://openaipublic.azureedge.net/clip/models"
CLIP_WEIGHTS: dict[str, WeightFile] = {
    "ViT-B-16": WeightFile(
        "ViT-B-16.pt",
        f"{_OPENAI}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    ),
    "ViT-L-14": WeightFile(
        "ViT-L-14.pt",
        f"{_OPENAI}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    ),
}


def cache_dir() -> Path:
    """The weights directory: $CLIP_GUIDED_SAM_CACHE, else the platform's user cache."""
    override = os.environ.get(CACHE_ENV)
    path = (
        Path(override) if override else Path(platformdirs.user_cache_dir("napari-clip-guided-sam"))
    )
    return path.expanduser()


def network_available(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` answers on its port within `timeout` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def fetch(weight: WeightFile, directory: Path | None = None) -> Path:
    """The local path of an official file, downloading it (progress bar, sha256) if needed."""
    directory = cache_dir() if directory is None else Path(directory)
    path = directory / weight.filename
    if path.is_file():
        return path
    if not network_available(weight.url):
        # Nothing else in this process should wait on the network either (e.g. the HF hub).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        raise WeightsError(
            f"No network, and {weight.filename} is not in the weights directory.\n"
            f"Download {weight.url}\non a connected machine and put it at {path}\n"
            f"(or set {CACHE_ENV} to a directory that holds it)."
        )
    import pooch  # imported here: only needed when downloading

    directory.mkdir(parents=True, exist_ok=True)
    downloaded = pooch.retrieve(
        weight.url,
        known_hash=f"sha256:{weight.sha256}",
        fname=weight.filename,
        path=directory,
        progressbar=True,
    )
    return Path(downloaded)


def load_tensor_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, a plain torch file (weights_only) or a TorchScript
    archive (OpenAI's CLIP files); never an arbitrary pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if _is_torchscript(path):
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise WeightsError(
            f"Cannot read {path}: the file is corrupt or truncated ({error})."
        ) from error
    except Exception as error:  # pickle.UnpicklingError from weights_only, safetensors errors
        raise WeightsError(
            f"Cannot read {path} safely: it is not a plain tensor file ({error})."
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a dict of tensors.")
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def strict_load(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """`load_state_dict(strict=True)` with an error that says what did not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if tuple(state[key].shape) != tuple(own[key].shape)
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es), e.g. {mismatched[:2]}")
        raise WeightsError(f"These weights do not fit {what}: " + "; ".join(problems) + ".")
    module.load_state_dict(state, strict=True)


def clean_openai_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI-layout CLIP state dict -> open_clip `CLIP` keys."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    for extra in ("input_resolution", "context_length", "vocab_size"):
        state.pop(extra, None)
    return state


def load_sam_weights(sam: nn.Module, variant: str, path: str | Path | None = None) -> Path:
    """Strictly load official SAM weights (the cached/downloaded file unless `path`)."""
    if path is None:
        if variant not in SAM_WEIGHTS:
            raise WeightsError(f"No official SAM weights for {variant!r}; pass a file.")
        path = fetch(SAM_WEIGHTS[variant])
    state = {k.removeprefix("module."): v for k, v in load_tensor_file(path).items()}
    strict_load(sam, state, f"SAM {variant} (from {path})")
    return Path(path)


def load_clip_weights(clip: nn.Module, arch: str, path: str | Path | None = None) -> Path:
    """Strictly load CLIP base weights (OpenAI file from the cache/download unless `path`)."""
    if path is None:
        if arch not in CLIP_WEIGHTS:
            raise WeightsError(f"No official CLIP weights registered for {arch!r}; pass a file.")
        path = fetch(CLIP_WEIGHTS[arch])
    state = clean_openai_clip_state(load_tensor_file(path))
    strict_load(clip, state, f"CLIP {arch} (from {path})")
    return Path(path)
