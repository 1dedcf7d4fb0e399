"""Instance splitting on DSB2018: split the union of the true nuclei, compare with the truth.

This isolates the splitting step (`inference.instances`) from the model: the input is the
perfect semantic mask (all true nuclei merged into one foreground), so the scores say how
well touching nuclei are separated. Prints, per method, the mean adjusted Rand index over
the foreground pixels and the mean AP@0.5 (the Data Science Bowl score TP / (TP+FP+FN)).

Usage (from the project root):
    .venv/bin/python benchmarks/instances_dsb.py --n-images 50
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_clip_guided_sam.evaluation.instances import adjusted_rand_index, match_instances
from napari_clip_guided_sam.inference.instances import InstanceConfig, split_instances

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def evenly_spaced(paths: list[Path], n: int) -> list[Path]:
    if n >= len(paths):
        return paths
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, n).round()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="dsb2018 folder")
    parser.add_argument("--n-images", type=int, default=50, help="evenly spaced label files")
    parser.add_argument(
        "--subset",
        choices=("even", "odd"),
        default="even",
        help="files at even or odd positions of the sorted list; the defaults were tuned "
        "on 'odd', scores are reported on 'even'",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="METHOD[:h[:sigma]]",
        help="configurations to score (default: connected, watershed defaults)",
    )
    args = parser.parse_args()
    every = sorted((args.root / "labels").glob("*.tif"))
    subset = every[0::2] if args.subset == "even" else every[1::2]
    labels = evenly_spaced(subset, args.n_images)
    configs = [parse_config(text) for text in args.config] or [
        InstanceConfig("connected"),
        InstanceConfig("watershed"),
    ]
    truths = [tifffile.imread(path) for path in labels]
    n_touching = sum(touching_pairs(gt) > 0 for gt in truths)
    print(
        f"{len(truths)} DSB2018 label images ({args.subset} positions) from {args.root} "
        f"({n_touching} with touching nuclei)"
    )
    print(f"{'method':28} {'ARI (fg)':>9} {'AP@0.5':>8} {'n pred/true':>12} {'s/img':>7}")
    for config in configs:
        aris, aps, n_pred, n_true = [], [], 0, 0
        start = time.perf_counter()
        for gt in truths:
            pred = split_instances(gt > 0, config)
            aris.append(adjusted_rand_index(pred, gt, mask=gt > 0))
            match = match_instances(pred, gt, 0.5)
            aps.append(match.average_precision)
            n_pred += int(pred.max())
            n_true += len(np.unique(gt)) - 1
        seconds = (time.perf_counter() - start) / len(truths)
        name = f"{config.method} h={config.h} sigma={config.sigma}"
        if config.method == "connected":
            name = "connected"
        print(
            f"{name:28} {np.mean(aris):9.3f} {np.mean(aps):8.3f} "
            f"{n_pred:>5}/{n_true:<6} {seconds:7.3f}"
        )


def parse_config(text: str) -> InstanceConfig:
    method, *rest = text.split(":")
    values = [float(v) for v in rest]
    keys = ("h", "sigma")
    return InstanceConfig(method, **dict(zip(keys, values, strict=False)))


def touching_pairs(gt: np.ndarray) -> int:
    """Number of pixel pairs where two different nuclei are 4-adjacent."""
    right = (gt[:, 1:] != gt[:, :-1]) & (gt[:, 1:] > 0) & (gt[:, :-1] > 0)
    down = (gt[1:] != gt[:-1]) & (gt[1:] > 0) & (gt[:-1] > 0)
    return int(right.sum() + down.sum())


if __name__ == "__main__":
    main()
