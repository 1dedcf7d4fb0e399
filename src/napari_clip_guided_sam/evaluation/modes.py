"""Prompt modes of training and scoring: where the prompt points come from."""

from __future__ import annotations

from typing import Literal

__all__ = ["PROMPT_MODES", "PromptMode", "check_mode"]

PromptMode = Literal["text", "manual"]
# "text": points sampled from CLIP's similarity map (as when segmenting by class name);
# "manual": points drawn from the ground truth (what clicks would give).
PROMPT_MODES: tuple[PromptMode, ...] = ("text", "manual")


def check_mode(mode: str) -> None:
    """Raise ValueError unless `mode` is one of :data:`PROMPT_MODES`."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"Unknown prompt mode {mode!r}; use 'text' (text only) or 'manual'.")
