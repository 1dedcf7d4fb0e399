"""Benchmark: what a model trained from scratch learns on DSB2018 nuclei in a fixed CPU time
budget, with the old training defaults and with the new preset and recipe.

For every seed, in one process, on the same held-out images:
  - old defaults: what `train --preset tiny` did before the recipe (256 px, 10 epochs,
    constant learning rate, flips and turns, shuffled): one run, scored at each budget mark it
    reaches and at its end (10 epochs may end before the largest budget: later marks then show
    that end);
  - new defaults: `--preset` (default `tiny_448`) with its recipe,
    `training.recipe.default_recipe`, `--time-budget B` and no epoch count (warm-up + cosine
    over the budget): one run per budget B, scored at its end, because its schedule depends on
    B;
  - SAM-PEFT with the new preset and recipe: the same model with the semantic adapters off
    (regular adapters, prompt encoder and decoder train; CLIP guides only through the
    prompts), one run per budget;
  - baselines without training: per-image Otsu thresholding and the similarity map > tau.
Held-out foreground IoU (mean over images), mIoU over {background, nucleus} and steps are
printed per run and, at the end, as one table with the ratios. Time is training time:
scoring pauses the clock; reading and resizing the files happens once, before.

    python benchmarks/train_dsb.py --budgets 60 300 900 --seeds 0 1 --json dsb.json

Two processes in parallel (one thread each) take half the time on two cores:

    python benchmarks/train_dsb.py --seeds 0 --json s0.json &
    python benchmarks/train_dsb.py --seeds 1 --json s1.json; wait
    python benchmarks/train_dsb.py --combine s0.json s1.json

The split is fixed: pairs sorted by name, `train_val_split(seed=0)` -> 400 train / 106
held-out; the first `--n-eval` held-out pairs (default 40) are scored. Choosing a preset or a
recipe scores the next 40 instead (`--held-out tune`), never the reported ones; e.g. the
input-size pilots of docs/training.md:

    python benchmarks/train_dsb.py --runs new --seeds 0 --budgets 300 --held-out tune \
        --preset tiny --image-size 512
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skimage.filters import threshold_otsu

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset, train_val_split
from napari_clip_guided_sam.evaluation.metrics import MetricAccumulator
from napari_clip_guided_sam.evaluation.scoring import evaluate_model
from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.model.runtime import resolve_precision
from napari_clip_guided_sam.training import (
    StepEvent,
    TrainingConfig,
    default_learning_rates,
    train,
)
from napari_clip_guided_sam.training.inputs import PreparedCache, Subset
from napari_clip_guided_sam.training.recipe import PAPER_RECIPE, default_recipe

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"
N_HELD_OUT = 106
OLD, NEW, PEFT = "old defaults", "new defaults", "sam-peft new recipe"
OLD_PRESET = "tiny"  # what the old defaults trained
RUNS = {"old": OLD, "new": NEW, "peft": PEFT}


def load_split(data: Path, n_eval: int, part: str = "report") -> tuple[Subset, Subset]:
    """The 400 training pairs and `n_eval` held-out pairs: the first ones ("report", the
    figures in the docs) or the next ones ("tune", for choosing a preset or a recipe without
    looking at the reported images)."""
    dataset = SliceDataset.from_folders(
        data / "images", data / "labels", ClassMap.single_class("nucleus"), cache_size=0
    )
    train_indices, held_out = train_val_split(dataset, N_HELD_OUT / len(dataset), seed=0)
    first = {"report": 0, "tune": n_eval}[part]
    return Subset(dataset, train_indices), Subset(dataset, held_out[first : first + n_eval])


def otsu_scores(held_out: Sequence) -> dict:
    """Per-image Otsu threshold of the grey model input; the foreground is the smaller side
    (nuclei cover less than half of an image), so no ground truth picks the polarity."""
    accumulator = MetricAccumulator()
    for index in range(len(held_out)):
        sample = held_out[index]
        grey = sample.image.astype(np.float64).mean(axis=-1)
        above = grey > threshold_otsu(grey)
        foreground = above if above.mean() <= 0.5 else ~above
        accumulator.update(foreground.astype(np.float64), sample.mask)
    return accumulator.summary()


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


def train_and_score(name, model, train_data, held_out, config, marks, seed) -> list[dict]:
    """Train with `config`; score the held-out set when the training time passes each of
    `marks` and at the end (a mark the run never reaches is scored by its end)."""
    dtype = resolve_precision(config.precision, torch.device("cpu"))
    model.fine_tuned = True
    pending, rows, last = sorted(marks), [], None
    for event in train(model, train_data, None, config):
        if isinstance(event, StepEvent):
            last = event
            while pending and event.elapsed_s >= pending[0] and pending[0] < max(marks):
                metrics = evaluate_model(model, held_out, dtype=dtype)
                rows.append(_row(name, seed, pending.pop(0), event, metrics))
                print(_format(rows[-1]), flush=True)
    metrics = evaluate_model(model, held_out, dtype=dtype)
    for mark in pending:
        rows.append(_row(name, seed, mark, last, metrics))
        print(_format(rows[-1]), flush=True)
    return rows


def train_variant(name, model, train_data, held_out, args) -> list[dict]:
    """The old constant-rate training for `args.budget_s`, scored untrained (time 0) and every
    `args.eval_every_s` (benchmarks/adapter_init.py)."""
    model.fine_tuned = True  # time 0 scores the state training starts from, as train() sets
    untrained = evaluate_model(
        model, held_out, dtype=resolve_precision(args.precision, torch.device("cpu"))
    )
    first = _row(name, args.seed, 0, None, untrained)
    print(_format(first), flush=True)
    config = TrainingConfig(
        epochs=None, lr=args.lr, clip_lr=args.clip_lr, seed=args.seed, device="cpu",
        precision=args.precision, time_budget_s=args.budget_s,
    )  # fmt: skip
    marks = list(np.arange(args.eval_every_s, args.budget_s + 1e-9, args.eval_every_s))
    return [first, *train_and_score(name, model, train_data, held_out, config, marks, args.seed)]


def _row(name, seed, budget, event, metrics) -> dict:
    return {
        "variant": name,
        "seed": seed,
        "budget_s": float(budget),
        "train_s": round(event.elapsed_s, 1) if event else 0.0,
        "step": event.step if event else 0,
        "fg_iou": metrics["fg_iou"],
        "miou": metrics["miou"],
        "dice": metrics["dice"],
    }


def _format(row: dict) -> str:
    return (
        f"{row['variant']:<20} seed {row['seed']} budget {row['budget_s']:5.0f}s "
        f"t={row['train_s']:7.1f}s step={row['step']:6d}  fg_iou={row['fg_iou']:.3f}  "
        f"miou={row['miou']:.3f}  dice={row['dice']:.3f}"
    )


def peft_config(config):
    return config.replace(name=f"{config.name}_sam_peft", **{"adapters.semantic_blocks": ()})


def new_config(args):
    """The model of the new defaults and SAM-PEFT: `--preset`, at `--image-size` if given."""
    config = get_preset(args.preset)
    if args.image_size is None:
        return config
    return config.replace(
        name=f"{config.name}@{args.image_size}", **{"sam.image_size": args.image_size}
    )


def run_seed(seed, args, inputs) -> list[dict]:
    """Every run of one seed; `inputs` maps "new" and "old" to their prepared (train,
    held-out) inputs."""
    rows = []
    base = dict(lr=args.lr, clip_lr=args.clip_lr, seed=seed, device="cpu", precision=args.precision)
    config = new_config(args)
    train_data, held_out = inputs["new"]
    model = build_model(config, seed=seed)
    rows.append(_row("similarity map > tau", seed, 0, None, similarity_map_scores(model, held_out)))
    print(_format(rows[-1]), flush=True)
    if "old" in args.runs:
        old = TrainingConfig(**base, **PAPER_RECIPE, time_budget_s=max(args.budgets))
        old_model = build_model(OLD_PRESET, seed=seed)
        rows += train_and_score(OLD, old_model, *inputs["old"], old, args.budgets, seed)
    recipe = {**default_recipe(args.preset), "epochs": None, **args.recipe}
    for budget in args.budgets:
        new = TrainingConfig(**{**base, **recipe}, time_budget_s=budget)
        if "new" in args.runs:
            model = build_model(config, seed=seed)
            rows += train_and_score(NEW, model, train_data, held_out, new, [budget], seed)
        if "peft" in args.runs:
            model = build_model(peft_config(config), base_weights="random", seed=seed)
            rows += train_and_score(PEFT, model, train_data, held_out, new, [budget], seed)
    return rows


def prepare_inputs(configs, train_data, held_out_data) -> dict[str, tuple]:
    """Read, normalise and resize every file once per model, outside the timed training:
    every run shares the prepared inputs, so the budget measures learning, not decoding."""
    inputs = {}
    for name, config in configs.items():
        train = PreparedCache(train_data, config, max_bytes=2**32)
        held_out = PreparedCache(held_out_data, config, max_bytes=2**30)
        for cache in (train, held_out):
            for index in range(len(cache)):
                cache[index]
        inputs[name] = (train, held_out)
    return inputs


def seed_table(rows: list[dict], names: list[str], seeds: list[int]) -> list[str]:
    """Held-out foreground IoU [mIoU] (steps) per scoring point of runs named
    "<name> seed <seed>": one column per run, the mean of each name over the seeds, and the
    ratio of each later name's mean to the first's."""
    by_run: dict[str, list[dict]] = {}
    for row in rows:
        by_run.setdefault(row["variant"], []).append(row)
    runs = [f"{name} seed {seed}" for name in names for seed in seeds]
    points = min(len(by_run[run]) for run in runs)
    header = ["point", *runs, *(f"mean {name}" for name in names)]
    header += [f"{name} / {names[0]}" for name in names[1:]]
    lines = [" | ".join(header)]
    for index in range(points):
        cells = [f"t~{by_run[runs[0]][index]['train_s']:.0f}s"]
        for run in runs:
            row = by_run[run][index]
            cells.append(f"{row['fg_iou']:.3f} [{row['miou']:.3f}] ({row['step']})")
        means = {
            name: float(np.mean([by_run[f"{name} seed {s}"][index]["fg_iou"] for s in seeds]))
            for name in names
        }
        cells += [f"{means[name]:.3f}" for name in names]
        cells += [f"{means[name] / max(means[names[0]], 1e-9):.2f}x" for name in names[1:]]
        lines.append(" | ".join(cells))
    return lines


def summary(rows: list[dict]) -> list[str]:
    """One line per budget: every variant's fg IoU per seed and its mean, then the ratios."""
    budgets = sorted({r["budget_s"] for r in rows if r["budget_s"] > 0})
    variants = [v for v in (OLD, NEW, PEFT) if any(r["variant"] == v for r in rows)]
    seeds = sorted({r["seed"] for r in rows if r["variant"] in variants})
    cell = {(r["variant"], r["seed"], r["budget_s"]): r for r in rows}
    lines = ["held-out foreground IoU [mIoU] (steps); mean over seeds"]
    header = ["budget"] + [f"{v} s{s}" for v in variants for s in seeds]
    header += [f"mean {v}" for v in variants]
    lines.append(" | ".join(header))
    means: dict[tuple[str, float], float] = {}
    for budget in budgets:
        cells = [f"{budget:.0f} s"]
        for variant in variants:
            values = []
            for seed in seeds:
                row = cell.get((variant, seed, budget))
                cells.append(
                    "-" if row is None else
                    f"{row['fg_iou']:.3f} [{row['miou']:.3f}] ({row['step']})"
                )  # fmt: skip
                if row is not None:
                    values.append(row["fg_iou"])
            means[variant, budget] = float(np.mean(values)) if values else float("nan")
        cells += [f"{means[v, budget]:.3f}" for v in variants]
        lines.append(" | ".join(cells))
    for budget in budgets:
        parts = [f"{budget:.0f} s:"]
        if (OLD, budget) in means and (NEW, budget) in means:
            parts.append(f"new/old {means[NEW, budget] / max(means[OLD, budget], 1e-9):.2f}x")
        if (PEFT, budget) in means and (NEW, budget) in means:
            gap = means[NEW, budget] - means[PEFT, budget]
            ratio = means[NEW, budget] / max(means[PEFT, budget], 1e-9)
            parts.append(f"CLIP-Guided SAM - SAM-PEFT {gap:+.3f} ({ratio:.2f}x)")
        lines.append("  ".join(parts))
    for name in ("otsu per image", "similarity map > tau"):
        values = [r["fg_iou"] for r in rows if r["variant"] == name]
        if values:
            lines.append(f"{name}: foreground IoU {np.mean(values):.3f}")
    return lines


def _setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    words = {"true": True, "false": False, "none": None}
    if value.lower() in words:
        return key, words[value.lower()]
    try:
        return key, float(value) if any(c in value for c in ".e") else int(value)
    except ValueError:
        return key, value


def main() -> None:
    lr, clip_lr = default_learning_rates("tiny")  # the same for every preset trained from scratch
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="DSB2018 folder")
    parser.add_argument(
        "--preset", default="tiny_448", help="the preset of the new defaults and SAM-PEFT"
    )
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 300.0, 900.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument(
        "--image-size", type=int, help="the new model's SAM input side (default: the preset's)"
    )
    parser.add_argument("--n-eval", type=int, default=40, help="held-out pairs scored")
    parser.add_argument(
        "--held-out",
        choices=("report", "tune"),
        default="report",
        help="score the first --n-eval held-out pairs (report: the documented figures) or the "
        "next ones (tune: for choosing a preset or recipe)",
    )
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--clip-lr", type=float, default=clip_lr)
    parser.add_argument("--precision", default="fp32", help="fp32 is faster for tiny on CPU")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steady timings on a shared 2-core machine)",
    )
    parser.add_argument(
        "--recipe",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change the new recipe, e.g. balance=false augment_scale=false lr=0.002 "
        "(TrainingConfig fields; true/false, numbers or words)",
    )
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    parser.add_argument(
        "--combine", type=Path, nargs="+", help="print the table of earlier --json files"
    )
    args = parser.parse_args()
    if args.combine:
        rows = [row for path in args.combine for row in json.loads(path.read_text())]
        print("\n".join(summary(rows)))
        return
    args.runs = [key for key in RUNS if key in args.runs]
    args.recipe = dict(_setting(text) for text in args.recipe)

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_data, held_out_data = load_split(args.data.resolve(), args.n_eval, args.held_out)
    print(
        f"DSB2018: {len(train_data)} train / {N_HELD_OUT} held-out pairs, scoring "
        f"{len(held_out_data)} ({args.held_out}); budgets {args.budgets} s; seeds {args.seeds}; "
        f"runs {args.runs}; lr {args.lr:g}, clip_lr {args.clip_lr:g}; new: "
        f"{new_config(args).name} with "
        f"{ {**default_recipe(args.preset), 'epochs': None, **args.recipe} }; "
        f"{torch.get_num_threads()} threads; precision {args.precision}",
        flush=True,
    )
    prepare_started = time.perf_counter()
    configs = {"new": new_config(args)}
    if "old" in args.runs:
        configs["old"] = get_preset(OLD_PRESET)
    inputs = prepare_inputs(configs, train_data, held_out_data)
    print(f"prepared inputs in {time.perf_counter() - prepare_started:.0f} s", flush=True)
    rows = [_row("otsu per image", -1, 0, None, otsu_scores(held_out_data))]
    print(_format(rows[-1]), flush=True)
    for seed in args.seeds:
        rows += run_seed(seed, args, inputs)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print()
    print("\n".join(summary(rows)))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
