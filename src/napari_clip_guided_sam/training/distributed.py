"""Training on several processes: one model replica per process, gradients averaged by
DistributedDataParallel (docs/architecture.md, "Training on several processes";
docs/scaling.md for the commands).

`torchrun` starts the processes and names each one's place in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`process_group`
joins them (``nccl`` on CUDA, ``gloo`` on the CPU) and gives the engine a :class:`Ranks`.
Outside torchrun it gives ``Ranks()``, one process, for which every method does nothing:
the engine has one code path and a single process trains exactly as it always did.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model.runtime import resolve_device

__all__ = ["TIMEOUT", "Ranks", "launched_world_size", "process_group"]

# How long a rank waits for the others: rank 0 validates and writes checkpoints while the
# other ranks wait for its metrics, which can take minutes on a large validation set.
TIMEOUT = timedelta(hours=2)


def launched_world_size() -> int:
    """How many processes a launcher (torchrun) started for this run (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class Ranks:
    """This process's place in a training run: `rank` of `world_size` processes, on the
    `local_rank`-th device of its machine. The default is a run of one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, the training state, logs and the progress bar."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The device of this process: CUDA device `local_rank` when training on CUDA."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def positions(self, count: int) -> np.ndarray:
        """The positions in an epoch's order of `count` examples that this rank trains on.

        torch's DistributedSampler without its own shuffle (the engine's order is already
        shuffled by (seed, epoch), the same on every rank): rank r takes positions
        r, r + W, r + 2W, ..., the order padded with its first positions to a multiple of
        W. So local batch b of every rank (size B) holds together exactly positions
        [b W B, (b + 1) W B) of the order: one process's batch b of size W B.
        """
        if not self.distributed:
            return np.arange(count)
        from torch.utils.data import DistributedSampler

        positions: list[int] = list(range(count))
        sampler: DistributedSampler[int] = DistributedSampler(
            positions,  # type: ignore[arg-type]  # any sized sequence serves as a dataset
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=False,
        )
        return np.fromiter(iter(sampler), dtype=np.int64)

    def wrap(self, module: nn.Module) -> nn.Module:
        """What the training step calls instead of `module`: the module itself for one
        process, else the module wrapped by DistributedDataParallel, which averages the
        gradients of every rank's `backward()`. Rank 0's weights are copied to every rank."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        return DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            # Some trainable tensors never get a gradient (SAM's box-corner embeddings with
            # point prompts, the IoU head): DDP must not wait for them, and leaves their
            # gradient None, so AdamW skips them as it does in one process.
            find_unused_parameters=True,
            # Buffers (SAM's pixel mean and std, CLIP's attention mask: a few kB) never
            # change; DDP's default copy of rank 0's at each forward costs nothing.
        )

    def accumulating(self, forward: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Around a backward of a gradient-accumulation group: gradients are averaged over
        the ranks only in the group's `last` backward."""
        if self.distributed and not last:
            return forward.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks, the same on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def from_main(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        carried = [value]
        dist.broadcast_object_list(carried, src=0)
        return carried[0]


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """The processes of this run, joined for as long as the block runs.

    Under torchrun (``WORLD_SIZE`` > 1) this process joins the group (``nccl`` when it
    trains on CUDA, else ``gloo``) and leaves it at the end; otherwise the run has one
    process and nothing is joined.

    Raises:
        ValueError: the device cannot train on several processes (MPS), or torch was built
            without distributed support.
    """
    if launched_world_size() <= 1:
        yield Ranks()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError(
            "this torch build cannot train on several processes (no torch.distributed); "
            "train with one process, without torchrun"
        )
    ranks = Ranks(
        int(os.environ["RANK"]), launched_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(ranks.place(target))
        backend = "nccl"
    elif target.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(
            f"training on several processes runs on CUDA GPUs or the CPU, not {target.type}; "
            "add --device cpu, or train with one process"
        )
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
