"""Training on several processes: one model replica per process, gradients averaged by
DistributedDataParallel (docs/architecture.md, "Training on several processes";
docs/scaling.md for the commands).

`torchrun` starts the processes and names each one's place in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`process_group`
joins them (``nccl`` on CUDA, ``gloo`` on the CPU) and gives the engine a :class:`Ranks`.
Outside torchrun it gives ``Ranks()``, one process, for which every method does nothing:
the engine has one code path and a single process trains exactly as it always did.

What the engine asks of the group: the device of this process, the model wrapped for
gradient averaging, the batch loss summed over the ranks, rank 0's training time (so
schedules and time budgets agree), and a barrier where rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

from ..model.runtime import resolve_device

__all__ = ["TIMEOUT", "Ranks", "process_group", "under_launcher"]

# How long a rank waits for the others: rank 0 validates and writes checkpoints while the
# other ranks wait at a barrier, which can take minutes on a large validation set.
TIMEOUT = timedelta(hours=2)


def under_launcher() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


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

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls instead of `model`: the model itself for one
        process, else the model wrapped by DistributedDataParallel, which averages the
        gradients of every rank's `backward()` (the text features, computed outside the
        forward, reach it through the forward's input). Rank 0's weights are copied to
        every rank here."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(
            _TrainedOutputs(model),
            device_ids=[device.index] if device.type == "cuda" else None,
            # Some trainable tensors never get a gradient (SAM's box-corner embeddings with
            # point prompts): DDP must not wait for them, and leaves their gradient None, so
            # AdamW skips them as it does in one process.
            find_unused_parameters=True,
            broadcast_buffers=False,  # the model's buffers never change
        )

    def accumulating(self, forward: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Around a backward of a gradient-accumulation group: gradients are averaged over
        the ranks only in the group's `last` backward."""
        if self.distributed and not last:
            return forward.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` (a scalar) summed over the ranks, the same on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        total = value.detach().clone().float()
        dist.all_reduce(total)
        return total

    def from_main(self, value: float) -> float:
        """Rank 0's `value` on every rank (e.g. its training time)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        carried = [value]
        dist.broadcast_object_list(carried, src=0)
        return float(carried[0])

    def barrier(self) -> None:
        """Wait until every rank gets here (rank 0 has written what it writes)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


class _TrainedOutputs(nn.Module):
    """The model as DistributedDataParallel sees it: its output with the IoU predictions
    cut from the graph. DDP follows the output back to find the tensors a step trains; the
    loss never uses the IoU head, so its tensors must not look used (DDP would wait
    forever for their gradients)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        output = self.model(*args, **kwargs)
        return dataclasses.replace(output, iou_predictions=output.iou_predictions.detach())


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
    if not under_launcher():
        yield Ranks()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError(
            "this torch build cannot train on several processes (no torch.distributed); "
            "train with one process, without torchrun"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ranks = Ranks(rank, world_size, local_rank)
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
