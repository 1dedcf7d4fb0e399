"""Benchmark: what the `tiny` preset learns on DSB2018 nuclei in a fixed CPU time budget.

Trains, for the same wall-clock budget each and in one process:
  1. CLIP-Guided SAM `tiny` in text-only mode (prompts sampled from the similarity map);
  2. the SAM-PEFT baseline: the same model with the semantic adapters off (regular adapters,
     prompt encoder and decoder still train; CLIP guides only through the prompts);
and scores, on a fixed held-out subset it never trains on:
  3. the similarity-map prompt alone (map > tau), no training;
  4. both models untrained (time 0).
It prints held-out foreground IoU (and mIoU over {background, nucleus}) at fixed points in
*training* time (evaluation pauses the clock) and the ratios at the end.

    python benchmarks/train_dsb.py --budget-s 300 --eval-every-s 60

The split is fixed: pairs sorted by name, `train_val_split(seed=0)` -> 400 train / 106
held-out; the first `--n-eval` held-out pairs (default 40) are scored.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset, train_val_split
from napari_clip_guided_sam.evaluation.metrics import MetricAccumulator
from napari_clip_guided_sam.evaluation.scoring import evaluate_model
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.runtime import resolve_precision
from napari_clip_guided_sam.training import (
    StepEvent,
    TrainingConfig,
    default_learning_rates,
    train,
)
from napari_clip_guided_sam.training.inputs import PreparedCache, Subset

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"
N_HELD_OUT = 106


def load_split(data: Path, n_eval: int) -> tuple[Subset, Subset]:
    dataset = SliceDataset.from_folders(
        data / "images", data / "labels", ClassMap.single_class("nucleus"), cache_size=0
    )
    train_indices, held_out = train_val_split(dataset, N_HELD_OUT / len(dataset), seed=0)
    return Subset(dataset, train_indices), Subset(dataset, held_out[:n_eval])


def similarity_map_scores(model, held_out: PreparedCache) -> dict:
    """Score the binary prompt mask (similarity map > tau) of an untrained model."""
    accumulator = MetricAccumulator()
    tau = model.config.guide.threshold
    model.eval()
    for index in range(len(held_out)):
        sample = held_out[index]
        with torch.no_grad():
            text = model.text_features([sample.class_name])
            maps = model.guidance(sample.image[None], text).similarity_map[0, 0]
        binary = (sample.frame.logits_to_original(maps) > tau).float().numpy()
        accumulator.update(binary, held_out.original_mask(index))
    return accumulator.summary()


def train_variant(name, model, train_data, held_out, args) -> list[dict]:
    """Train for the budget; score the held-out set every `eval_every_s` of training time."""
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    config = TrainingConfig(
        epochs=10_000,
        lr=args.lr,
        clip_lr=args.clip_lr,
        mode="text",
        seed=args.seed,
        device="cpu",
        precision=args.precision,
        time_budget_s=args.budget_s,
    )
    model.fine_tuned = True  # time 0 scores the state training starts from, as train() sets
    rows = [_row(name, 0.0, 0, evaluate_model(model, held_out, dtype=dtype))]
    print(_format(rows[-1]), flush=True)
    next_mark = args.eval_every_s
    last_step = None
    for event in train(model, train_data, None, config):
        if isinstance(event, StepEvent):
            last_step = event
            if event.elapsed_s >= next_mark:
                metrics = evaluate_model(model, held_out, dtype=dtype)
                rows.append(_row(name, event.elapsed_s, event.step, metrics))
                print(_format(rows[-1]), flush=True)
                next_mark += args.eval_every_s
    if last_step is not None and rows[-1]["step"] != last_step.step:
        metrics = evaluate_model(model, held_out, dtype=dtype)
        rows.append(_row(name, last_step.elapsed_s, last_step.step, metrics))
        print(_format(rows[-1]), flush=True)
    return rows


def _row(name: str, seconds: float, step: int, metrics: dict) -> dict:
    return {
        "variant": name,
        "train_s": round(seconds, 1),
        "step": step,
        "fg_iou": metrics["fg_iou"],
        "miou": metrics["miou"],
        "dice": metrics["dice"],
    }


def _format(row: dict) -> str:
    return (
        f"{row['variant']:<22} t={row['train_s']:7.1f}s step={row['step']:6d}  "
        f"fg_iou={row['fg_iou']:.3f}  miou={row['miou']:.3f}  dice={row['dice']:.3f}"
    )


def main() -> None:
    lr, clip_lr = default_learning_rates("tiny")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="DSB2018 folder")
    parser.add_argument("--budget-s", type=float, default=300.0, help="training time each")
    parser.add_argument("--eval-every-s", type=float, default=60.0)
    parser.add_argument("--n-eval", type=int, default=40, help="held-out pairs scored")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--clip-lr", type=float, default=clip_lr)
    parser.add_argument("--precision", default="fp32", help="fp32 is faster for tiny on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steady timings on a shared 2-core machine)",
    )
    parser.add_argument(
        "--variants", nargs="+", default=["guided", "peft"], choices=["guided", "peft"]
    )
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_data, held_out_data = load_split(args.data.resolve(), args.n_eval)
    print(
        f"DSB2018: {len(train_data)} train / {N_HELD_OUT} held-out pairs, scoring "
        f"{len(held_out_data)}; budget {args.budget_s:.0f} s each; lr {args.lr:g}, "
        f"clip_lr {args.clip_lr:g}; {torch.get_num_threads()} threads; precision "
        f"{args.precision}",
        flush=True,
    )
    guided = build_model("tiny", seed=args.seed)
    # Read, normalise and resize every file once, outside the timed training: both variants
    # share the prepared inputs, so the budget measures learning, not file decoding.
    prepare_started = time.perf_counter()
    train_data = PreparedCache(train_data, guided.config, max_bytes=2**31)
    held_out = PreparedCache(held_out_data, guided.config, max_bytes=2**30)
    for cache in (train_data, held_out):
        for index in range(len(cache)):
            cache[index]
    print(f"prepared inputs in {time.perf_counter() - prepare_started:.0f} s", flush=True)
    rows = [_row("similarity map > tau", 0.0, 0, similarity_map_scores(guided, held_out))]
    print(_format(rows[-1]), flush=True)
    if "guided" in args.variants:
        rows += train_variant("clip-guided-sam tiny", guided, train_data, held_out, args)
    if "peft" in args.variants:
        peft = build_model(
            guided.config.replace(name="tiny_sam_peft", **{"adapters.semantic_blocks": ()}),
            base_weights="random",
            seed=args.seed,
        )
        rows += train_variant("sam-peft (no semantic)", peft, train_data, held_out, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if set(args.variants) != {"guided", "peft"}:
        return

    final = {row["variant"]: row for row in rows}
    ours, baseline = final["clip-guided-sam tiny"], final["sam-peft (no semantic)"]
    similarity = final["similarity map > tau"]
    print("\nfinal held-out foreground IoU:")
    for row in (ours, baseline, similarity):
        print("  " + _format(row))
    print(
        f"ratio clip-guided-sam / sam-peft: fg_iou {ours['fg_iou'] / baseline['fg_iou']:.2f}x, "
        f"miou {ours['miou'] / baseline['miou']:.2f}x"
    )
    print(
        f"ratio clip-guided-sam / similarity map: "
        f"fg_iou {ours['fg_iou'] / max(similarity['fg_iou'], 1e-9):.2f}x"
    )
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
