"""Benchmark: which adapter initialisation fine-tunes faster, `released` or `identity`.

`released` is PyTorch's default init plus the released code's inner skip in the regular
adapter (what the authors trained from); `identity` zeroes the adapters' output layers and
drops the inner skip, so fine-tuning starts exactly at the zero-shot model. Both train the
`tiny` preset on DSB2018 nuclei in text-only mode, for the same CPU training-time budget,
with the same seeds, in one process; held-out foreground IoU (and mIoU) is printed at fixed
points of training time (scoring pauses the clock), then a table of both inits side by
side with their ratio. The split and scoring are those of `train_dsb.py`.

    python benchmarks/adapter_init.py --budget-s 300 --eval-every-s 60 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from train_dsb import DATA, N_HELD_OUT, load_split, otsu_scores, seed_table, train_variant

from napari_clip_guided_sam.model.config import ADAPTER_INITS, get_preset
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import default_learning_rates
from napari_clip_guided_sam.training.inputs import PreparedCache


def variant_name(init: str, seed: int) -> str:
    return f"{init} seed {seed}"


def main() -> None:
    lr, clip_lr = default_learning_rates("tiny")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="DSB2018 folder")
    parser.add_argument("--budget-s", type=float, default=300.0, help="training time each")
    parser.add_argument("--eval-every-s", type=float, default=60.0)
    parser.add_argument("--n-eval", type=int, default=40, help="held-out pairs scored")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--inits", nargs="+", default=list(ADAPTER_INITS), choices=ADAPTER_INITS)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--clip-lr", type=float, default=clip_lr)
    parser.add_argument("--precision", default="fp32", help="fp32 is faster for tiny on CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_data, held_out_data = load_split(args.data.resolve(), args.n_eval)
    print(
        f"DSB2018: {len(train_data)} train / {N_HELD_OUT} held-out pairs, scoring "
        f"{len(held_out_data)}; budget {args.budget_s:.0f} s per run; inits {args.inits}, "
        f"seeds {args.seeds}; lr {args.lr:g}, clip_lr {args.clip_lr:g}; "
        f"{torch.get_num_threads()} threads; precision {args.precision}",
        flush=True,
    )
    otsu = otsu_scores(held_out_data)
    print(
        f"baseline without training, per-image Otsu: fg_iou={otsu['fg_iou']:.3f} "
        f"miou={otsu['miou']:.3f}",
        flush=True,
    )
    config = get_preset("tiny")
    train_data = PreparedCache(train_data, config, max_bytes=2**31)
    held_out = PreparedCache(held_out_data, config, max_bytes=2**30)
    for cache in (train_data, held_out):  # read and resize once, outside the timed runs
        for index in range(len(cache)):
            cache[index]
    rows = []
    for seed in args.seeds:
        for init in args.inits:
            args.seed = seed  # train_variant's TrainingConfig seed
            model = build_model(config.replace(**{"adapters.init": init}), seed=seed)
            rows += train_variant(variant_name(init, seed), model, train_data, held_out, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("\nheld-out foreground IoU [mIoU] (steps) at each scoring point:")
    for line in seed_table(rows, args.inits, args.seeds):
        print("  " + line)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
