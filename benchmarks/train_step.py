"""CPU cost of one training step of the real architecture, and what a fine-tune would take.

Runs the training engine (`training.train`, text mode, batch 1, AdamW over the trainable
set: forward, backward, optimiser step) on synthetic 1024 x 1024 images for each variant:

- fp32 with fused attention (the default), fp32 with segment-anything's own attention,
- bf16 autocast with fused attention,
- optionally (`--compile`) fp32 with the image encoder compiled,

each in a fresh process, so that its peak resident memory (ru_maxrss) is its own. It prints
the machine's fp32/bf16 matmul peaks, seconds per step (median after `--warmup` steps),
peak memory, and the hours for `--slices` slices x `--epochs` epochs at batch 1.
Random weights stand in for the official ones (speed does not depend on their values).

    .venv/bin/python benchmarks/train_step.py                      # paper, ~10 min on 2 cores
    .venv/bin/python benchmarks/train_step.py --preset tiny --steps 3   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

VARIANTS = {
    "fp32 fused": {"precision": "fp32", "fused": True, "compile": False},
    "fp32 unfused": {"precision": "fp32", "fused": False, "compile": False},
    "bf16 fused": {"precision": "bf16", "fused": True, "compile": False},
    "fp32 fused compiled": {"precision": "fp32", "fused": True, "compile": True},
}


def synthetic_samples(count: int, size: int) -> list:
    """Disks on noise, each with its mask, as `data.datasets.Sample`s of one class."""
    from napari_clip_guided_sam.data.datasets import Sample

    samples = []
    yy, xx = np.mgrid[:size, :size]
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(20):
            cy, cx = rng.integers(0, size, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < int(rng.integers(size // 60, size // 25)) ** 2
        image[mask] = 200
        samples.append(Sample(image, mask, "nucleus", f"synthetic {seed}"))
    return samples


def run_variant(preset: str, variant: str, steps: int, warmup: int) -> dict:
    """One variant in this process: seconds per optimiser step and peak memory."""
    from napari_clip_guided_sam.model.attention import use_fused_attention
    from napari_clip_guided_sam.model.compilation import compile_image_encoder
    from napari_clip_guided_sam.model.factory import build_model
    from napari_clip_guided_sam.training import StepEvent, TrainingConfig, train

    options = VARIANTS[variant]
    model = build_model(preset, base_weights="random")
    use_fused_attention(model, options["fused"])
    if options["compile"] and not compile_image_encoder(model):
        raise SystemExit(f"{preset} runs its image encoder block by block: nothing to compile")
    size = model.config.sam.image_size
    config = TrainingConfig(
        epochs=1,
        max_steps=warmup + steps,
        device="cpu",
        precision=options["precision"],
        augment=False,
        seed=0,
    )
    samples = synthetic_samples(warmup + steps, size)
    times, last = [], time.perf_counter()
    for event in train(model, samples, None, config):
        if isinstance(event, StepEvent):
            now = time.perf_counter()
            times.append(now - last)
            last = now
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "variant": variant,
        "first_step_s": times[0],
        "step_s": statistics.median(times[warmup:]),
        "peak_rss_gib": peak_kib / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also the compiled encoder")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.preset, args.variant, args.steps, args.warmup)))
        return

    from napari_clip_guided_sam.model.precision_probe import machine_key, measure_gflops

    cpu = torch.device("cpu")
    print(f"{machine_key(cpu)}, {torch.get_num_threads()} threads, preset {args.preset}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    peaks = measure_gflops(cpu, ("fp32", "bf16"), shape=(4096, 4096, 4096), rounds=3)
    print(f"matmul peak 4096^3: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s")
    variants = [v for v in VARIANTS if args.compile or not VARIANTS[v]["compile"]]
    results = []
    for variant in variants:
        command = [sys.executable, __file__, "--variant", variant, "--preset", args.preset]
        command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(f"  done: {variant}", flush=True)

    base = results[0]["step_s"]
    steps_total = args.slices * args.epochs
    print(
        f"\n{'variant':<20} {'first step s':>12} {'step s':>8} {'vs fp32 fused':>14} "
        f"{'peak GiB':>9} {f'hours for {args.slices} x {args.epochs}':>18}"
    )
    for row in results:
        hours = row["step_s"] * steps_total / 3600
        print(
            f"{row['variant']:<20} {row['first_step_s']:12.2f} {row['step_s']:8.2f} "
            f"{row['step_s'] / base:13.2f}x {row['peak_rss_gib']:9.2f} {hours:18.1f}"
        )
    print("(validation passes and checkpoint writes are extra)")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
