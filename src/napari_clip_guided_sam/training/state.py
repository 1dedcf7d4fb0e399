"""The training-state file: everything needed to resume a run, without pickle.

One safetensors file next to the last checkpoint (``last.state.safetensors``) holds the
trainable tensors, the optimiser state and, in its JSON header, the counters (epoch, step,
position in the epoch, best metric, elapsed time, history) and both configs. Because it is
self-contained and written atomically, a crash between writing the checkpoint and the state
never leaves a pair that disagrees. Random numbers are a pure function of (seed, epoch,
batch), so no generator state needs saving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from ..model.checkpoint import write_safetensors
from ..model.clip_guided_sam import CLIPGuidedSAM
from ..model.trainable import trainable_parameter_names

STATE_FORMAT = "napari-clip-guided-sam-training-state"
STATE_VERSION = "1"
STATE_SUFFIX = ".state.safetensors"
_MODEL_PREFIX = "model/"
_OPTIMIZER_PREFIX = "optimizer/"


@dataclass
class TrainingState:
    """Counters of a run; `epoch` is 0-based and `batch` the next batch within it."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    elapsed_s: float = 0.0
    epoch_loss_sum: float = 0.0  # training loss of the current epoch so far
    epoch_loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def state_path_for(checkpoint_path: str | Path) -> Path:
    """``out/last.safetensors`` -> ``out/last.state.safetensors``."""
    path = Path(checkpoint_path)
    name = path.name.removesuffix(".safetensors")
    return path.with_name(name + STATE_SUFFIX)


def resolve_resume_path(path: str | Path, last_name: str) -> Path:
    """The state file to resume from, given it, its checkpoint, or the output folder."""
    path = Path(path)
    if path.is_dir():
        path = path / last_name
    if not path.name.endswith(STATE_SUFFIX):
        path = state_path_for(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Cannot resume: no training state {path}. Resuming needs the folder of a run "
            "(or its last checkpoint) with the state file written next to it."
        )
    return path


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    saved = optimizer.state_dict()
    tensors = {}
    for index, entries in saved["state"].items():
        for key, value in entries.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{_OPTIMIZER_PREFIX}{index}/{key}"] = value.detach().cpu().contiguous()
    return tensors, saved["param_groups"]


def save_state(
    path: Path,
    model: CLIPGuidedSAM,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    info: dict[str, Any],
) -> Path:
    """Write the training state atomically; `info` is extra JSON (configs, class names)."""
    parameters = dict(model.named_parameters())
    tensors = {
        _MODEL_PREFIX + name: parameters[name].detach().cpu().contiguous()
        for name in trainable_parameter_names(model)
    }
    optimizer_tensors, groups = _optimizer_tensors(optimizer)
    tensors.update(optimizer_tensors)
    header = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "state": json.dumps(state.__dict__),
        "param_groups": json.dumps(groups),
        "info": json.dumps(info),
    }
    return write_safetensors(path, tensors, header)


@dataclass
class LoadedState:
    state: TrainingState
    info: dict[str, Any]
    model_tensors: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]


def _read_header(path: Path) -> dict[str, str]:
    """The JSON header of a training-state file, checked to be one."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable training state: {error}") from error
    if header.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a training-state file (no {STATE_FORMAT} tag).")
    return header


def _decode(path: Path, header: dict[str, str], key: str) -> Any:
    try:
        return json.loads(header[key])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} has a damaged header: {error}") from error


def read_state_info(path: Path) -> dict[str, Any]:
    """The `info` of a training-state file (configs, class names), without its tensors."""
    return _decode(path, _read_header(path), "info")


def load_state(path: Path) -> LoadedState:
    """Read a training-state file (validating its format) without touching any model."""
    header = _read_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable training state: {error}") from error
    try:
        state = TrainingState(**_decode(path, header, "state"))
    except TypeError as error:
        raise ValueError(f"{path} has a damaged header: {error}") from error
    groups = _decode(path, header, "param_groups")
    info = _decode(path, header, "info")
    model_tensors: dict[str, torch.Tensor] = {}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(_MODEL_PREFIX):
            model_tensors[key.removeprefix(_MODEL_PREFIX)] = value
        else:
            index, leaf = key.removeprefix(_OPTIMIZER_PREFIX).split("/", 1)
            per_param.setdefault(int(index), {})[leaf] = value
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return LoadedState(state, info, model_tensors, {"state": per_param, "param_groups": groups})


def restore(loaded: LoadedState, model: CLIPGuidedSAM, optimizer: torch.optim.Optimizer) -> None:
    """Copy the saved trainable tensors and optimiser state into a freshly built run."""
    parameters = dict(model.named_parameters())
    expected = set(trainable_parameter_names(model))
    if expected != set(loaded.model_tensors):
        raise ValueError(
            "The training state does not fit this model (different trainable tensors); "
            "resume with the preset and settings of the interrupted run."
        )
    with torch.no_grad():
        for name, tensor in loaded.model_tensors.items():
            parameters[name].copy_(tensor.to(parameters[name].dtype))
    # load_state_dict moves the moments onto each parameter's device and dtype.
    optimizer.load_state_dict(loaded.optimizer_state)
    model.guide.reset_text_cache()
