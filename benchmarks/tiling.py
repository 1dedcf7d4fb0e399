"""Benchmark: segmenting large images in tiles (docs/batch.md, "Tiling").

memory   Peak RSS of the batch path (`inference.batch.iter_slice_labels`, labels written
         band by band to a file) on a lazily generated nuclei-like image, for several
         image sizes with the tiling default of the model (windows of its input size), one
         fresh process per size; then a stack of several slices. Flat in the image size
         means the memory is bounded by the windows in flight. The RSS after loading the
         model is printed as the baseline of each process.
quality  A canvas of real DSB2018 held-out nuclei images (crops placed side by side, at
         their own resolution) of --canvas pixels, segmented by a fine-tuned `tiny` model
         squashed into its input (tiling off) and in tiles. Foreground IoU of the canvas,
         mean per-piece IoU with the per-piece Otsu baseline, and the seam check: IoU inside
         the halo bands (pixels two windows share) and elsewhere.

The model of the quality part is trained here on the DSB2018 training split for
--train-seconds (the `tiny` recipe), or loaded with --checkpoint.

Smoke test (tiny budgets):

    python benchmarks/tiling.py --sizes 512 768 1024 --stack 2 --stack-size 512 \
        --canvas 1024 --n-pieces 16 --train-seconds 20

Full run (quiet machine; the memory part takes about 15 minutes with 1024 px tiles, the
quality part the training time plus a few minutes):

    python benchmarks/tiling.py --sizes 2048 6000 10000 --memory-tile 1024 --stack 2 20 \
        --canvas 2048 --train-seconds 600 --json tiling.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"
PIECE = 256  # side of each DSB crop on the quality canvas


# --------------------------------------------------------------------------- memory


class NucleiLike:
    """A lazily generated uint8 RGB image or stack ([Z,] H, W, 3) of dark disks on a light
    field: each 64 px cell holds a disk whose centre and radius are a hash of the cell, so
    any region is computed on its own and the whole image never exists in memory."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = (*shape, 3)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        plane_key = key[-3:-1]
        z = key[0] if self.ndim == 4 else 0
        rows = np.arange(self.shape[-3])[plane_key[0]]
        cols = np.arange(self.shape[-2])[plane_key[1]]
        yy, xx = np.meshgrid(rows, cols, indexing="ij")
        cy, cx = yy // 64, xx // 64
        seed = (cy * 7919 + cx * 104729 + int(z) * 1299709) % 2147483647
        hashed = np.sin(seed.astype(np.float64) * 12.9898) * 43758.5453
        fraction = hashed - np.floor(hashed)
        radius = 10 + 14 * fraction
        dy = yy - (cy * 64 + 32 + (fraction - 0.5) * 20)
        dx = xx - (cx * 64 + 32 + (0.5 - fraction) * 20)
        grey = np.where(dy * dy + dx * dx <= radius * radius, 60, 200).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        return rgb[..., key[-1]]


class BandFile:
    """Label rows written to a file as they come (`tiled_labels(out=...)`)."""

    def __init__(self, path: Path, shape: tuple[int, int]):
        self.shape, self.dtype = shape, np.dtype(np.uint8)
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by the caller

    def __setitem__(self, rows: slice, labels: np.ndarray) -> None:
        self.handle.seek(rows.start * self.shape[1])
        self.handle.write(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_child(size: int, slices: int, tile: int, checkpoint: str | None) -> dict:
    """Segment one generated image (or stack) of size x size in this process."""
    from napari_clip_guided_sam.data.image import ImageData
    from napari_clip_guided_sam.inference.batch.tile_source import SliceWindows
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.inference.tiled import tiled_labels
    from napari_clip_guided_sam.inference.tiles import TilingConfig, plan_tiles

    predictor = load_predictor(checkpoint)
    names = ["nucleus"]
    table = predictor.label_table_for(names)
    predictor.segment(NucleiLike((256, 256))[:, :], names)  # warm up kernels
    baseline = peak_rss_mb()
    shape = (slices, size, size) if slices > 1 else (size, size)
    image = ImageData(NucleiLike(shape), "ZYXC" if slices > 1 else "YXC")
    tiling = TilingConfig(enabled=True, tile_shape=tile or None)
    plan = plan_tiles((size, size), predictor.input_size, tiling)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for z in range(slices):
            index = (z,) if slices > 1 else ()
            out = BandFile(Path(folder) / f"labels{z}.raw", (size, size))
            windows = SliceWindows(image, index, _normalize())
            tiled_labels(predictor, windows, plan, names, table, out=out)  # type: ignore[arg-type]
            out.handle.close()
            predictor.clear_cache()
    assert isinstance(predictor, Predictor)
    return {
        "size": size,
        "slices": slices,
        "windows": plan.n_tiles,
        "baseline_mb": round(baseline, 1),
        "peak_mb": round(peak_rss_mb(), 1),
        "image_mb": round(slices * size * size * 3 / 2**20, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _normalize():
    from napari_clip_guided_sam.data.normalize import NormalizeConfig

    return NormalizeConfig()


def run_memory(args) -> list[dict]:
    rows = []
    runs = [(size, 1) for size in args.sizes] + [(args.stack_size, n) for n in args.stack]
    for size, slices in runs:
        command = [sys.executable, __file__, "--memory-child", str(size), str(slices)]
        command += ["--memory-tile", str(args.memory_tile or 0)]
        if args.checkpoint:
            command += ["--checkpoint", args.checkpoint]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"memory  {row['slices']:>3} x {size:>5}^2 px ({row['image_mb']:>7.1f} MB of RGB, "
            f"{row['windows']:>4} windows/slice): peak RSS {row['peak_mb']:7.1f} MB, "
            f"after model load {row['baseline_mb']:7.1f} MB, {row['seconds']} s",
            flush=True,
        )
    singles = [r for r in rows if r["slices"] == 1]
    if len(singles) > 1:
        first, last = singles[0], singles[-1]
        print(
            f"memory  image {last['image_mb'] / first['image_mb']:.1f}x larger -> peak RSS "
            f"{last['peak_mb'] / first['peak_mb']:.2f}x (pipeline above baseline: "
            f"{first['peak_mb'] - first['baseline_mb']:.0f} -> "
            f"{last['peak_mb'] - last['baseline_mb']:.0f} MB)"
        )
    return rows


# --------------------------------------------------------------------------- quality


def load_predictor(checkpoint: str | None):
    from napari_clip_guided_sam.inference.predictor import Predictor

    if checkpoint:
        return Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    return Predictor.from_preset("tiny", device="cpu", precision="fp32")


def dsb_split(data: Path):
    from napari_clip_guided_sam.data.class_map import ClassMap
    from napari_clip_guided_sam.data.datasets import SliceDataset, train_val_split
    from napari_clip_guided_sam.training.inputs import Subset

    dataset = SliceDataset.from_folders(
        data / "images", data / "labels", ClassMap.single_class("nucleus"), cache_size=0
    )
    train_indices, held_out = train_val_split(dataset, 106 / len(dataset), seed=0)
    return Subset(dataset, train_indices), Subset(dataset, held_out)


def trained_predictor(args, train_data):
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.model.factory import build_model
    from napari_clip_guided_sam.training import (
        StepEvent,
        TrainingConfig,
        default_learning_rates,
        train,
    )
    from napari_clip_guided_sam.training.recipe import default_recipe

    if args.checkpoint:
        return load_predictor(args.checkpoint), 0
    model = build_model("tiny", seed=0)
    lr, clip_lr = default_learning_rates("tiny")
    recipe = {**default_recipe("tiny"), "epochs": None}
    config = TrainingConfig(
        **recipe,
        lr=lr,
        clip_lr=clip_lr,
        seed=0,
        device="cpu",
        precision="fp32",
        time_budget_s=args.train_seconds,
    )
    steps = sum(isinstance(event, StepEvent) for event in train(model, train_data, None, config))
    return Predictor(model.eval(), device="cpu", precision="fp32"), steps


def canvas(held_out, side: int, n_pieces: int):
    """Held-out images cropped to PIECE px (or padded by reflection) on a side x side grid."""
    per_row = side // PIECE
    count = min(n_pieces, per_row * per_row, len(held_out))
    image = np.zeros((side, side, 3), np.uint8)
    truth = np.zeros((side, side), bool)
    pieces = []
    for k in range(count):
        sample = held_out[k]
        crop = np.pad(
            sample.image[:PIECE, :PIECE],
            (
                (0, max(0, PIECE - sample.image.shape[0])),
                (0, max(0, PIECE - sample.image.shape[1])),
                (0, 0),
            ),
            mode="reflect",
        )
        mask = np.zeros((PIECE, PIECE), bool)
        mask[: min(PIECE, sample.mask.shape[0]), : min(PIECE, sample.mask.shape[1])] = sample.mask[
            :PIECE, :PIECE
        ]
        y, x = (k // per_row) * PIECE, (k % per_row) * PIECE
        image[y : y + PIECE, x : x + PIECE] = crop
        truth[y : y + PIECE, x : x + PIECE] = mask
        pieces.append((slice(y, y + PIECE), slice(x, x + PIECE)))
    return image, truth, pieces


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    union = (found | truth).sum()
    return float((found & truth).sum() / union) if union else 1.0


def halo_bands(plan) -> np.ndarray:
    """Pixels that more than one window covers."""
    count = np.zeros(plan.shape, np.int16)
    for tile in plan.tiles():
        count[tile.y0 : tile.y1, tile.x0 : tile.x1] += 1
    return count > 1


def run_quality(args) -> dict:
    from skimage.filters import threshold_otsu

    from napari_clip_guided_sam.inference.tiles import TilingConfig, plan_tiles

    train_data, held_out = dsb_split(Path(args.data))
    start = time.perf_counter()
    predictor, steps = trained_predictor(args, train_data)
    trained_s = time.perf_counter() - start
    image, truth, pieces = canvas(held_out, args.canvas, args.n_pieces)
    used = np.zeros_like(truth)
    for rows, cols in pieces:
        used[rows, cols] = True
    results = {}
    for name, tiling in (("squashed", TilingConfig(enabled=False)), ("tiled", TilingConfig())):
        start = time.perf_counter()
        found = predictor.segment(image, ["nucleus"], tiling=tiling).labels > 0
        seconds = time.perf_counter() - start
        per_piece = [iou(found[p], truth[p]) for p in pieces]
        results[name] = {
            "canvas_iou": iou(found & used, truth),
            "mean_piece_iou": float(np.mean(per_piece)),
            "seconds": round(seconds, 1),
            "found": found,
        }
    otsu = []
    for piece in pieces:
        grey = image[piece].astype(np.float64).mean(axis=-1)
        above = grey > threshold_otsu(grey)
        otsu.append(iou(above if above.mean() <= 0.5 else ~above, truth[piece]))
    plan = plan_tiles(truth.shape, predictor.input_size, TilingConfig())
    bands = halo_bands(plan) & used
    tiled = results["tiled"]["found"]
    seam = {
        "iou_in_halo_bands": iou(tiled & bands, truth & bands),
        "iou_elsewhere": iou(tiled & used & ~bands, truth & ~bands),
        "band_fraction": float(bands.sum() / used.sum()),
    }
    origin = args.checkpoint or f"tiny trained here for {trained_s:.0f} s ({steps} steps)"
    print(
        f"quality canvas {args.canvas}^2 of {len(pieces)} held-out DSB2018 crops of {PIECE} px, "
        f"{plan.n_tiles} windows; model: {origin}"
    )
    print(f"quality per-piece Otsu baseline: mean IoU {np.mean(otsu):.3f}")
    for name in ("squashed", "tiled"):
        r = results[name]
        print(
            f"quality {name:8s}: canvas foreground IoU {r['canvas_iou']:.3f}, mean per-piece "
            f"{r['mean_piece_iou']:.3f}, {r['seconds']} s"
        )
    ratio = results["tiled"]["canvas_iou"] / max(results["squashed"]["canvas_iou"], 1e-9)
    print(f"quality tiled / squashed canvas IoU: {ratio:.2f}x")
    print(
        f"seam    IoU in halo bands {seam['iou_in_halo_bands']:.3f} vs elsewhere "
        f"{seam['iou_elsewhere']:.3f} ({seam['band_fraction']:.0%} of the canvas in bands)"
    )
    for r in results.values():
        r.pop("found")
    return {"otsu_mean_piece_iou": float(np.mean(otsu)), **results, "seam": seam}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 6000, 10000])
    parser.add_argument("--stack", type=int, nargs="*", default=[20], help="stack depths")
    parser.add_argument("--stack-size", type=int, default=2048)
    parser.add_argument(
        "--memory-tile",
        type=int,
        default=None,
        help="tile side of the memory runs (default: the model's input minus two halos)",
    )
    parser.add_argument("--data", default=str(DATA), help="the DSB2018 folder")
    parser.add_argument("--canvas", type=int, default=2048)
    parser.add_argument("--n-pieces", type=int, default=64)
    parser.add_argument("--train-seconds", type=float, default=600)
    parser.add_argument("--checkpoint", default=None, help="a fine-tuned tiny checkpoint")
    parser.add_argument("--skip", choices=("memory", "quality"), nargs="*", default=[])
    parser.add_argument("--json", default=None)
    parser.add_argument("--memory-child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        size, slices = args.memory_child
        print(json.dumps(memory_child(size, slices, args.memory_tile, args.checkpoint)))
        return
    report = {}
    if "memory" not in args.skip:
        report["memory"] = run_memory(args)
    if "quality" not in args.skip:
        report["quality"] = run_quality(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
