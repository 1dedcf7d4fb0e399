"""The `auto` precision, chosen by measurement and cached per machine.

Whether bf16 autocast is faster than fp32 cannot be read off CPU flags: a Xeon with
AVX512-BF16 multiplied encoder-sized matrices at 318 GFLOP/s in fp32 and 163 in bf16, while
an AMD EPYC with the same flag ran bf16 about 3x faster than fp32. So `auto` times the
operation that dominates both encoders, a linear layer of ViT-B's shapes under each
candidate autocast dtype, interleaved and keeping the fastest of a few runs, and picks the
fastest precision; a reduced precision must beat fp32 by `MIN_SPEEDUP` (within that, fp32's
accuracy wins). The result is stored as JSON in the cache directory, keyed by processor,
torch version and device, so the probe (well under a second) runs once per machine;
`probe_precision(device, force=True)` or `clip-guided-sam info --system --reprobe` measures
again.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from .._atomic import atomic_write
from .weights import cache_dir

PRECISION_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# tokens x width -> hidden: a quarter of ViT-B's 64 x 64 token grid through its MLP layer.
PROBE_SHAPE = (1024, 768, 3072)
MIN_SPEEDUP = 1.1  # a reduced precision is chosen only when this much faster than fp32
PROBE_ROUNDS = 4  # interleaved timings per candidate (the first also warms up)
CACHE_FILE = "precision_probe.json"

Measure = Callable[[torch.device, tuple[str, ...]], dict[str, float]]

_lock = threading.Lock()


@dataclass(frozen=True)
class PrecisionChoice:
    """What `auto` resolves to on one device, and why."""

    precision: str  # "fp32", "bf16" or "fp16"
    gflops: dict[str, float]  # measured rate of the probe per candidate precision
    reason: str
    machine: str  # the cache key: processor, torch version, device
    measured_at: str  # ISO time of the measurement
    cached: bool = False  # read from the cache file rather than measured now

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None = plain fp32)."""
        return PRECISION_DTYPES[self.precision]


def candidates(device: torch.device) -> tuple[str, ...]:
    """Precisions worth timing on `device`: fp32 first."""
    if device.type == "cpu":
        return ("fp32", "bf16")
    if device.type == "cuda":
        reduced = ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16",)
        return ("fp32", *reduced)
    return ("fp32",)  # mps and others: autocast support varies; keep fp32


def choose_precision(gflops: dict[str, float], min_speedup: float = MIN_SPEEDUP) -> tuple[str, str]:
    """The precision to use from measured rates (GFLOP/s per precision, fp32 included), and
    the reason in words. bf16 is preferred to fp16 when within `min_speedup` of it (fp32's
    range, no overflow)."""
    base = gflops["fp32"]
    faster = {p: r for p, r in gflops.items() if p != "fp32" and r >= min_speedup * base}
    rates = ", ".join(f"{p} {r:.0f}" for p, r in gflops.items())
    if not faster:
        best_other = max((p for p in gflops if p != "fp32"), key=lambda p: gflops[p], default=None)
        if best_other is None:
            return "fp32", "fp32 is the only precision used on this device"
        verdict = "slower than" if gflops[best_other] < base else "not clearly faster than"
        return "fp32", (
            f"{best_other} measured {verdict} fp32 ({rates} GFLOP/s); fp32 kept "
            f"(reduced precision needs >= {min_speedup:.2f}x)"
        )
    choice = max(faster, key=lambda p: faster[p])
    if "bf16" in faster and faster["bf16"] * min_speedup >= faster[choice]:
        choice = "bf16"
    return choice, f"{choice} measured {gflops[choice] / base:.2f}x fp32 ({rates} GFLOP/s)"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_gflops(
    device: torch.device,
    precisions: tuple[str, ...],
    shape: tuple[int, int, int] = PROBE_SHAPE,
    rounds: int = PROBE_ROUNDS,
) -> dict[str, float]:
    """GFLOP/s of `F.linear` on [tokens, width] x [hidden, width] fp32 tensors under each
    precision's autocast (the casts the model pays included), fastest of `rounds`.

    The candidates take turns, so a change in machine load hits all alike; one already
    twice as slow as the fastest is dropped early.
    """
    tokens, width, hidden = shape
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(tokens, width, generator=generator).to(device)
    weight = torch.randn(hidden, width, generator=generator).to(device)
    best = dict.fromkeys(precisions, math.inf)
    active = list(precisions)
    for _ in range(rounds):
        for precision in active:
            dtype = PRECISION_DTYPES[precision]
            context = (
                contextlib.nullcontext()
                if dtype is None
                else torch.autocast(device_type=device.type, dtype=dtype)
            )
            with torch.no_grad(), context:
                _synchronize(device)
                start = time.perf_counter()
                F.linear(inputs, weight)
                _synchronize(device)
                best[precision] = min(best[precision], time.perf_counter() - start)
        fastest = min(best.values())
        active = [p for p in active if best[p] < 2 * fastest]
    flop = 2 * tokens * width * hidden
    return {p: flop / seconds / 1e9 for p, seconds in best.items()}


def machine_key(device: torch.device) -> str:
    """Processor (or GPU) name, torch version and device: what the choice depends on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return f"{name} | torch {torch.__version__} | {device.type}"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def probe_precision(
    device: torch.device, *, force: bool = False, measure: Measure = measure_gflops
) -> PrecisionChoice:
    """What `auto` means on `device`: cached, or measured now (and cached).

    force: measure again even when a cached choice exists. measure: the timing function
    (tests inject known rates).
    """
    key = machine_key(device)
    precisions = candidates(device)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if len(precisions) == 1:
        return PrecisionChoice("fp32", {}, f"only fp32 is used on {device.type}", key, now)
    with _lock:
        path = cache_path()
        entries = _read_cache(path)
        entry = entries.get(key)
        if not force and isinstance(entry, dict):
            with contextlib.suppress(TypeError, KeyError, ValueError):
                choice = PrecisionChoice(**entry, cached=True)
                if choice.precision in precisions:
                    return choice
        gflops = measure(device, precisions)
        precision, reason = choose_precision(gflops)
        choice = PrecisionChoice(precision, gflops, reason, key, now)
        record = asdict(choice)
        record.pop("cached")
        entries[key] = record
        with contextlib.suppress(OSError):  # a read-only cache only costs a probe next time
            atomic_write(path, lambda temp: temp.write_text(json.dumps(entries, indent=1)))
        return choice
