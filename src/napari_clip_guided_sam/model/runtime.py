"""Device and precision choice shared by inference, training and the widgets and CLI."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where it is used: the CLI lists these choices fast
    import torch


DeviceName = Literal["auto", "cuda", "mps", "cpu"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
# The choices offered by the CLI and the widgets, in the order they are listed.
DEVICE_CHOICES: tuple[DeviceName, ...] = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
# Activation checkpointing of the trained encoder blocks (training.compute decides "auto").
CHECKPOINTING_CHOICES: tuple[str, ...] = ("auto", "on", "off")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for `name`: "auto" picks cuda, then mps, then cpu; an unavailable
    choice is a clear error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cuda", "mps", "cpu") and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device {name!r}; use {', '.join(DEVICE_CHOICES)}.")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for but no CUDA GPU is available; use cpu.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Device 'mps' was asked for but is not available; use cpu.")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for `precision` on `device` (None = plain fp32).

    "auto": the fastest precision a short timed probe found on this machine (cached; see
    `model.precision_probe`).
    """
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU; use bf16 or fp32.")
        return torch.float16
    if precision != "auto":
        raise ValueError(f"Unknown precision {precision!r}; use {', '.join(PRECISION_CHOICES)}.")
    from .precision_probe import probe_precision  # imports torch

    return probe_precision(device).dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for `dtype`, or a no-op context for fp32."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
