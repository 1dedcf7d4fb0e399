"""CPU training cost of the paper architecture, full and with each CPU-friendly option.

For SAM inputs of 1024 and 512 px, each variant runs in a fresh process (so that its peak
resident memory is its own) through `training.estimate.estimate_run`: a few real steps of
the training engine (text mode, batch 1, AdamW, a validation pass per epoch) on synthetic
images, with random weights standing in for the official ones (speed and memory do not
depend on their values). Variants:

- full: the `paper` preset (adapters in all 12 blocks, CLIP attention trained in all 12);
- full + checkpointing: the trained blocks recomputed in the backward pass;
- last-N: adapters in the last N SAM blocks only, no prefix cache (the frozen blocks still
  run at every step, without autograd);
- last-N + cache: their output cached per image (and augmentation variant);
- last-N + CLIP last-M + cache: CLIP's attention trained in its last M blocks only, its
  frozen blocks cached too (at 512 px: the `paper_cpu` preset);
- the same + checkpointing, and in bf16 autocast.

It prints seconds per step (a step whose frozen prefixes are cached), the extra seconds
for a step that computes a new prefix, peak resident memory measured and projected for
the whole run (prepared inputs and prefix cache for every slice), and the hours for
`--slices` slices x `--epochs` epochs: steps, each slice's prefixes once per augmentation
variant (2), the per-epoch text ensemble; validation with `--val-fraction`.

    .venv/bin/python benchmarks/train_cpu.py                     # both sizes, ~25 min
    .venv/bin/python benchmarks/train_cpu.py --sizes 512 --variants "last-N + CLIP last-M + cache"
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

# name -> (architecture choices, TrainingConfig changes)
VARIANTS = {
    "full": (False, False, {"activation_checkpointing": "off"}),
    "full + checkpointing": (False, False, {"activation_checkpointing": "on"}),
    "last-N": (True, False, {"prefix_cache_mb": 0, "prefix_cache_disk_mb": 0}),
    "last-N + cache": (True, False, {}),
    "last-N + CLIP last-M + cache": (True, True, {}),
    "last-N + CLIP last-M + cache + checkpointing": (
        True, True, {"activation_checkpointing": "on"},
    ),
    "last-N + CLIP last-M + cache, bf16": (True, True, {"precision": "bf16"}),
}  # fmt: skip


def run_variant(args, variant: str, size: int) -> dict:
    """One variant in this process: the estimate, and the process's peak memory."""
    import dataclasses

    import psutil

    from napari_clip_guided_sam.model.config import get_preset, with_compute_choices
    from napari_clip_guided_sam.training import TrainingConfig
    from napari_clip_guided_sam.training.estimate import estimate_run

    last_n, clip_last_m, changes = VARIANTS[variant]
    config = with_compute_choices(
        get_preset("paper"),
        image_size=size,
        adapter_blocks=args.adapter_blocks if last_n else None,
        clip_trainable_blocks=args.clip_trainable_blocks if clip_last_m else None,
    )
    training = TrainingConfig(
        epochs=args.epochs, device="cpu", precision="fp32", activation_checkpointing="off"
    )
    training = dataclasses.replace(training, **changes)
    n_val = round(args.slices * args.val_fraction)
    rss_before = psutil.Process().memory_info().rss
    estimate = estimate_run(config, training, args.slices - n_val, n_val)
    return {
        "variant": variant,
        "size": size,
        **dataclasses.asdict(estimate),
        "rss_before": rss_before,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--adapter-blocks", type=int, default=3, help="N (default 3)")
    parser.add_argument("--clip-trainable-blocks", type=int, default=2, help="M (default 2)")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--val-fraction", type=float, default=0.0, help="of the slices held out (validated)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one variant, in a child
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_variant(args, args.child, args.size)))
        return

    from napari_clip_guided_sam.model.precision_probe import machine_key, measure_gflops

    cpu = torch.device("cpu")
    print(f"{machine_key(cpu)}, {torch.get_num_threads()} threads; paper architecture")
    print(
        f"N = {args.adapter_blocks} adapted SAM blocks, M = {args.clip_trainable_blocks} trained "
        f"CLIP blocks; {args.slices} slices ({args.val_fraction:.0%} validated) x "
        f"{args.epochs} epochs"
    )
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    peaks = measure_gflops(cpu, ("fp32", "bf16"), shape=(2048, 2048, 2048), rounds=3)
    print(f"matmul peak 2048^3: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s")
    results = []
    for size in args.sizes:
        for variant in args.variants:
            command = [sys.executable, __file__, "--child", variant, "--size", str(size)]
            for option in ("adapter_blocks", "clip_trainable_blocks", "slices", "epochs"):
                command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
            command += ["--val-fraction", str(args.val_fraction)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"  {size} px {variant}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            took = time.perf_counter() - started
            print(f"  done: {size} px, {variant} ({took:.0f} s)", flush=True)

    print(
        f"\n{'size':>5} {'variant':<45} {'s/step':>7} {'+s/new':>7} {'vs full':>8} "
        f"{'peak GB':>8} {'for run':>8} {'ckpt':>5} {'hours':>6}"
    )
    base = {r["size"]: r["total_seconds"] for r in results if r["variant"] == "full"}
    for row in results:
        ratio = base.get(row["size"])
        ratio_text = f"{ratio / row['total_seconds']:.1f}x" if ratio else "-"
        projected = (row["rss_before"] + row["peak_bytes"]) / 1e9
        print(
            f"{row['size']:>5} {row['variant']:<45} {row['seconds_per_step']:7.2f} "
            f"{row['seconds_per_prefix']:7.2f} {ratio_text:>8} {row['peak_rss'] / 1e9:8.2f} "
            f"{projected:8.2f} {'on' if row['checkpointing'] else 'off':>5} "
            f"{row['total_seconds'] / 3600:6.2f}"
        )
    print(
        "s/step: a step with cached prefixes; +s/new: extra per slice whose prefix is computed; "
        "vs full: speed-up of the whole run; peak GB: this process's peak resident memory "
        "(a few slices); for run: projected with every slice's prepared input and prefixes; "
        "hours: the whole run (checkpoint writes are extra)"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
