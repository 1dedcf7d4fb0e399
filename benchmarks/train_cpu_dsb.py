"""Benchmark: what the CPU-friendly configuration costs in accuracy, on `tiny` and DSB2018.

Trains, for the same CPU training-time budget each, in one process and one thread:
  - full: the `tiny` preset (adapters in every SAM block, CLIP attention trained in every
    block, a fresh flip/rotation per visit);
  - last-N: adapters in the last `--adapter-blocks` SAM blocks and CLIP attention in the
    last `--clip-trainable-blocks` CLIP blocks, their frozen prefixes computed once per
    image and augmentation variant (the prefix cache and 2 fixed variants per image, the
    engine's defaults for such a model): the `paper_cpu` recipe at `tiny` size;
  - optionally (`--image-size 128`) last-N at half the input side (4x fewer tokens);
and scores every variant on the held-out images of `train_dsb.py` at fixed points of
training time (scoring pauses the clock), two seeds by default. It prints the per-image
Otsu baseline, then held-out foreground IoU (mean over images) [mIoU] (steps) per variant,
seed and scoring point, the means over seeds and their ratio to full.

    python benchmarks/train_cpu_dsb.py --budget-s 300 --eval-every-s 60 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from train_dsb import DATA, N_HELD_OUT, load_split, otsu_scores, seed_table, train_variant

from napari_clip_guided_sam.model.config import get_preset, with_compute_choices
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import default_learning_rates
from napari_clip_guided_sam.training.inputs import PreparedCache


def variant_configs(args) -> dict:
    tiny = get_preset("tiny")
    last_n = with_compute_choices(
        tiny, adapter_blocks=args.adapter_blocks, clip_trainable_blocks=args.clip_trainable_blocks
    )
    configs = {"full": tiny, f"last-{args.adapter_blocks}": last_n}
    if args.image_size:
        small = with_compute_choices(last_n, image_size=args.image_size)
        configs[f"last-{args.adapter_blocks} {args.image_size} px"] = small
    return configs


def main() -> None:
    lr, clip_lr = default_learning_rates("tiny")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="DSB2018 folder")
    parser.add_argument("--budget-s", type=float, default=300.0, help="training time each")
    parser.add_argument("--eval-every-s", type=float, default=60.0)
    parser.add_argument("--n-eval", type=int, default=40, help="held-out pairs scored")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--adapter-blocks", type=int, default=2, help="of tiny's 4")
    parser.add_argument("--clip-trainable-blocks", type=int, default=1, help="of tiny's 4")
    parser.add_argument("--image-size", type=int, default=None, help="also last-N at this size")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--clip-lr", type=float, default=clip_lr)
    parser.add_argument("--precision", default="fp32", help="fp32 is faster for tiny on CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_data, held_out_data = load_split(args.data.resolve(), args.n_eval)
    configs = variant_configs(args)
    print(
        f"DSB2018: {len(train_data)} train / {N_HELD_OUT} held-out pairs, scoring "
        f"{len(held_out_data)}; budget {args.budget_s:.0f} s each; seeds {args.seeds}; "
        f"{torch.get_num_threads()} thread(s); precision {args.precision}",
        flush=True,
    )
    otsu = otsu_scores(held_out_data)
    print(f"per-image Otsu (no training): fg_iou={otsu['fg_iou']:.3f} miou={otsu['miou']:.3f}")
    prepared: dict[int, tuple[PreparedCache, PreparedCache]] = {}
    rows = []
    for name, config in configs.items():
        size = config.sam.image_size
        if size not in prepared:  # read and resize once per input size, outside the budget
            caches = (
                PreparedCache(train_data, config, max_bytes=2**31),
                PreparedCache(held_out_data, config, max_bytes=2**30),
            )
            for cache in caches:
                for index in range(len(cache)):
                    cache[index]
            prepared[size] = caches
        for seed in args.seeds:
            args.seed = seed
            model = build_model(config.replace(name="tiny"), base_weights="random", seed=seed)
            run = f"{name} seed {seed}"
            rows += train_variant(run, model, *prepared[size], args)
    print()
    for line in seed_table(rows, list(configs), args.seeds):
        print(line)
    print(f"per-image Otsu baseline: fg_iou {otsu['fg_iou']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"otsu": otsu, "rows": rows}, indent=1))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
