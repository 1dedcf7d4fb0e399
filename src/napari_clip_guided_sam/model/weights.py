"""Base weights: where they live, how they are fetched and checked, how they load
(docs/architecture.md, "Presets and weights").

Official files are kept in one folder (`CLIP_GUIDED_SAM_CACHE`, else the user cache folder)
and checked against the registry's sha256 on first use; the verified state is remembered
(`file_hashes`), so a large file is not hashed on every start. A user behind a firewall drops
the files there; without network one error lists every missing file with its URL and sha256.

No loader runs code from a file: safetensors, or `torch.load(weights_only=True)` for plain
torch files. TorchScript archives are refused, except OpenAI's official CLIP files (known by
their sha256), whose tensors a code-free reader takes out (`torchscript`).
"""

from __future__ import annotations

import os
import socket
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import platformdirs
import torch
from torch import nn

from .file_hashes import RECORD_NAME, remember, remembered_sha256
from .torchscript import TorchScriptError, is_torchscript_archive, read_torchscript_tensors

CACHE_ENV = "CLIP_GUIDED_SAM_CACHE"
FETCH_COMMAND = "clip-guided-sam weights fetch"


class WeightsError(RuntimeError):
    """Base weights are missing, corrupt, unsafe or of the wrong architecture."""


@dataclass(frozen=True)
class WeightFile:
    """One official weight file: where it comes from and how to recognise it."""

    filename: str
    url: str
    sha256: str
    size: int | None = None  # bytes, when known

    def describe(self) -> str:
        return f"{self.filename} (sha256 {self.sha256[:12]}…) from {self.url}"


class MissingWeightsError(WeightsError):
    """Official base weights are not in the weights folder and cannot be downloaded now.

    `missing` lists every file still needed (all at once, not the first one), `directory`
    is where they belong; `str(error)` is the whole message with URLs, hashes and the fix.
    """

    def __init__(
        self,
        missing: Sequence[WeightFile],
        directory: Path,
        reason: str = "there is no network to download them",
        preset: str | None = None,
    ):
        self.missing = tuple(missing)
        self.directory = Path(directory)
        self.reason = reason
        self.preset = preset
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.missing)
        lines = [
            f"Base weights missing: {count} official file{'s' if count != 1 else ''} "
            f"{'are' if count != 1 else 'is'} not in the weights folder and {self.reason}.",
        ]
        for weight in self.missing:
            size = f" ({weight.size / 1e6:.0f} MB)" if weight.size else ""
            lines += [
                f"  {weight.filename}{size}",
                f"    url:    {weight.url}",
                f"    sha256: {weight.sha256}",
            ]
        command = FETCH_COMMAND
        if self.preset not in (None, "paper"):
            command += f" --preset {self.preset}"
        lines += [
            f"Put {'them' if count != 1 else 'it'} in {self.directory}",
            f"(or set {CACHE_ENV} to a folder that holds {'them' if count != 1 else 'it'}),",
            f"or run `{command}` on a machine with network and copy the folder over.",
            "To try the workflow without them, use the `tiny` preset (random weights).",
        ]
        return "\n".join(lines)


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
    """The weights folder: $CLIP_GUIDED_SAM_CACHE, else the platform's user cache."""
    override = os.environ.get(CACHE_ENV)
    path = (
        Path(override) if override else Path(platformdirs.user_cache_dir("napari-clip-guided-sam"))
    )
    return path.expanduser()


def file_sha256(path: str | Path, *, rehash: bool = False) -> str:
    """sha256 of a weight file (remembered in the weights folder while the file is unchanged)."""
    return remembered_sha256(path, cache_dir() / RECORD_NAME, rehash=rehash)


def network_available(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` answers on its port within `timeout` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_official(weight: WeightFile, path: Path) -> None:
    """A file in the weights folder must be the official one: same sha256 as the registry."""
    actual = file_sha256(path)
    if actual != weight.sha256:
        raise WeightsError(
            f"{path} is not the official {weight.filename}: its sha256 is\n  {actual}\n"
            f"but the official file's is\n  {weight.sha256}\n"
            f"Delete it and run `{FETCH_COMMAND}` (or download {weight.url}). If it is your "
            "own fine-tuned SAM, keep it under another name and choose it as custom base "
            "weights (--sam-weights)."
        )


def official_paths(
    weights: Sequence[WeightFile], directory: Path | None = None, preset: str | None = None
) -> list[Path]:
    """Local paths of official files: checked against their sha256, downloaded (with a
    progress bar) when missing and the network answers. `preset` names the fetch command.

    Raises MissingWeightsError listing every file that is still missing, and WeightsError
    for a file whose hash is not the official one.
    """
    directory = cache_dir() if directory is None else Path(directory)
    missing = [weight for weight in weights if not (directory / weight.filename).is_file()]
    if missing:
        if not all(network_available(weight.url) for weight in missing):
            # Nothing else in this process should wait on the network either (the HF hub).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            raise MissingWeightsError(missing, directory, preset=preset)
        for index, weight in enumerate(missing):
            try:
                _download(weight, directory)
            except Exception as error:  # HTTP errors, a wrong hash, a full disk
                reason = f"downloading {weight.filename} failed ({error})"
                raise MissingWeightsError(missing[index:], directory, reason, preset) from error
    paths = [directory / weight.filename for weight in weights]
    for weight, path in zip(weights, paths, strict=True):
        check_official(weight, path)
    return paths


def fetch(weight: WeightFile, directory: Path | None = None) -> Path:
    """The local path of an official file, downloading it if needed (see `official_paths`)."""
    return official_paths([weight], directory)[0]


def _download(weight: WeightFile, directory: Path) -> None:
    import pooch  # imported here: only needed when downloading

    directory.mkdir(parents=True, exist_ok=True)
    path = pooch.retrieve(
        weight.url,
        known_hash=f"sha256:{weight.sha256}",
        fname=weight.filename,
        path=directory,
        progressbar=True,
    )
    remember(path, weight.sha256, directory / RECORD_NAME)  # pooch checked the hash


@dataclass(frozen=True)
class VerifiedFile:
    """One file of the weights folder after `verify_directory`."""

    name: str
    status: str  # "official", "WRONG HASH", "missing" or "not in the registry"
    sha256: str | None = None
    expected: str | None = None


def registry() -> dict[str, WeightFile]:
    """Every registered official file by file name."""
    return {w.filename: w for table in (SAM_WEIGHTS, CLIP_WEIGHTS) for w in table.values()}


def verify_directory(directory: Path | None = None) -> list[VerifiedFile]:
    """Hash every file in the weights folder afresh and compare it with the registry;
    registered files that are absent are listed as missing."""
    directory = cache_dir() if directory is None else Path(directory)
    known = registry()
    results = []
    present = sorted(
        path
        for path in (directory.iterdir() if directory.is_dir() else [])
        if path.is_file() and not path.name.startswith(".")
    )
    for path in present:
        weight = known.get(path.name)
        digest = file_sha256(path, rehash=True)
        if weight is None:
            results.append(VerifiedFile(path.name, "not in the registry", digest))
        else:
            status = "official" if digest == weight.sha256 else "WRONG HASH"
            results.append(VerifiedFile(path.name, status, digest, weight.sha256))
    names = {path.name for path in present}
    results += [
        VerifiedFile(name, "missing", expected=weight.sha256)
        for name, weight in known.items()
        if name not in names
    ]
    return results


def load_tensor_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a plain torch file (`weights_only`); never an
    arbitrary pickle, never code. TorchScript archives are refused unless they are OpenAI's
    official CLIP files (by sha256), whose tensors are read without running anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if is_torchscript_archive(path):
        return _official_torchscript_tensors(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
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


def _official_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    if file_sha256(path) not in {weight.sha256 for weight in CLIP_WEIGHTS.values()}:
        raise WeightsError(
            f"{path} is a TorchScript archive, which can run code when loaded; only OpenAI's "
            "official CLIP files (checked by sha256) are read from such archives. Convert "
            "your file to plain tensors first: in the environment that made it, "
            "`safetensors.torch.save_file(torch.jit.load(FILE).state_dict(), "
            "'weights.safetensors')`, and use the .safetensors file."
        )
    try:
        return read_torchscript_tensors(path)
    except TorchScriptError as error:
        raise WeightsError(f"Cannot read {path}: {error}") from error


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


def load_sam_weights(sam: nn.Module, variant: str, path: str | Path) -> None:
    """Strictly load SAM base weights from `path` (official or the user's own file)."""
    state = {k.removeprefix("module."): v for k, v in load_tensor_file(path).items()}
    strict_load(sam, state, f"SAM {variant} (from {path})")


def load_clip_weights(clip: nn.Module, arch: str, path: str | Path) -> None:
    """Strictly load CLIP base weights (OpenAI's layout) from `path`."""
    state = clean_openai_clip_state(load_tensor_file(path))
    if is_torchscript_archive(path):
        # The archive also keeps tensor attributes that are not module state (a traced
        # model's masks, say); the model's own keys are the state dict.
        own = clip.state_dict()
        state = {key: value for key, value in state.items() if key in own}
    strict_load(clip, state, f"CLIP {arch} (from {path})")
