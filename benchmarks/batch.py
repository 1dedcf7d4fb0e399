"""Batch stack segmentation: slices per second and memory against stack length.

Each configuration runs in a fresh process: it writes a synthetic uint16 ImageJ stack of
N slices (512 x 512 by default), builds the predictor, segments one slice to warm up, then
runs `inference.batch.segment_stack` on the whole stack while a thread samples memory every
20 ms. Memory is reported as the growth over the warmed-up baseline:

- RSS: the whole resident set (includes pages of the memory-mapped input file, which the
  kernel may drop at any time: they are cache, not allocations);
- anon: anonymous memory only (Python objects, numpy and torch buffers), the part that
  would grow if slices or predictions were kept.

`tiny` uses the tiny preset's seeded random weights; `paper` is the full paper
architecture (SAM ViT-B + CLIP ViT-B/16 at 512) with random weights, since official weights
cannot be downloaded here (speed and memory do not depend on the weight values).

Usage (from the project root):
    .venv/bin/python benchmarks/batch.py --preset tiny --slices 10 25 50 200
    .venv/bin/python benchmarks/batch.py --preset paper --slices 2 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def memory_mb() -> tuple[float, float]:
    """(RSS, anonymous RSS) of this process in MiB, from /proc (Linux)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "RssAnon:")):
                name, amount, _ = line.split()
                values[name[:-1]] = int(amount) / 1024
    return values.get("VmRSS", float("nan")), values.get("RssAnon", float("nan"))


class PeakSampler(threading.Thread):
    """Samples memory every `interval` seconds; keeps the peaks."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_rss, self.peak_anon = memory_mb()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss, anon = memory_mb()
            self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def synthetic_stack(n_slices: int, size: int, seed: int = 0) -> np.ndarray:
    """uint16 [N, size, size]: noisy background with bright disks that drift over Z."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(0.1 * size, 0.9 * size, size=(12, 2))
    radii = rng.uniform(0.03 * size, 0.07 * size, size=12)
    stack = np.empty((n_slices, size, size), np.uint16)
    for z in range(n_slices):
        plane = rng.normal(400, 60, (size, size))
        for (cy, cx), r in zip(centres + z * 0.5, radii, strict=True):
            plane[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += 2500
        stack[z] = np.clip(plane, 0, 65535)
    return stack


def build_predictor(preset: str, device: str, precision: str):
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.model.factory import build_model

    base = "random"  # no official weights on this machine; timings do not depend on values
    model = build_model(preset, base_weights=base)
    model.fine_tuned = True  # time the adapted encoder, as with a fine-tuned checkpoint
    return Predictor(model, device, precision)


def write_stack(path: Path, n_slices: int, size: int) -> None:
    """An uncompressed uint16 ImageJ stack (memory-mapped when read), written slice by slice."""
    import tifffile

    slices = (synthetic_stack(1, size, seed=z)[0] for z in range(n_slices))
    with tifffile.TiffWriter(path, imagej=True) as tiff:
        tiff.write(
            slices,
            shape=(n_slices, size, size),
            dtype=np.uint16,
            metadata={"axes": "ZYX", "spacing": 1.0, "unit": "micron"},
            resolution=(1 / 0.25, 1 / 0.25),
        )


def worker(args: argparse.Namespace) -> dict:
    import torch

    from napari_clip_guided_sam.data.reader import read_image_lazy
    from napari_clip_guided_sam.inference.batch import SegmentOptions, SliceDone, segment_stack

    torch.set_num_threads(args.threads)
    path = Path(args.stack)
    folder = path.parent
    predictor = build_predictor(args.preset, args.device, args.precision)
    options = SegmentOptions(class_names=("nucleus",))
    image = read_image_lazy(path)
    # Warm-up: one slice through the whole path (first-call allocations, thread pools).
    warm = read_image_lazy(path)
    warm.array = warm.array[:1]
    for _ in segment_stack(predictor, warm, folder / "warm.tif", options):
        pass
    base_rss, base_anon = memory_mb()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    done = 0
    for event in segment_stack(predictor, image, folder / "labels.tif", options):
        done += isinstance(event, SliceDone)
    seconds = time.perf_counter() - start
    sampler.stop()
    end_rss, end_anon = memory_mb()
    return {
        "preset": args.preset,
        "slices": done,
        "size": args.size,
        "seconds": round(seconds, 2),
        "slices_per_s": round(done / seconds, 3),
        "baseline_rss_mb": round(base_rss, 1),
        "peak_rss_growth_mb": round(sampler.peak_rss - base_rss, 1),
        "peak_anon_growth_mb": round(sampler.peak_anon - base_anon, 1),
        "end_anon_growth_mb": round(end_anon - base_anon, 1),
        "precision": str(predictor.dtype or "fp32"),
        "threads": torch.get_num_threads(),
        "output_kb": round((folder / "labels.tif").stat().st_size / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="tiny or paper (random weights)")
    parser.add_argument("--slices", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--size", type=int, default=512, help="slice side in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="append results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stack", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(
        f"{'preset':7} {'slices':>6} {'s/slice':>8} {'slices/s':>9} {'base RSS':>9} "
        f"{'peak +RSS':>10} {'peak +anon':>11} {'end +anon':>10} precision"
    )
    for n in args.slices:
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as folder:
            stack = Path(folder) / "stack.tif"
            write_stack(stack, n, args.size)
            command = [sys.executable, __file__, "--worker", f"--stack={stack}"] + [
                f"--{k}={v}"
                for k, v in (
                    ("preset", args.preset),
                    ("size", args.size),
                    ("device", args.device),
                    ("threads", args.threads),
                    ("precision", args.precision),
                )
            ]
            output = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if output.returncode != 0:
            print(output.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"worker for {n} slices failed")
        r = json.loads(output.stdout.strip().splitlines()[-1])
        print(
            f"{r['preset']:7} {r['slices']:6d} {r['seconds'] / r['slices']:8.2f} "
            f"{r['slices_per_s']:9.3f} {r['baseline_rss_mb']:7.0f}MB "
            f"{r['peak_rss_growth_mb']:8.1f}MB {r['peak_anon_growth_mb']:9.1f}MB "
            f"{r['end_anon_growth_mb']:8.1f}MB {r['precision']}",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as handle:
                handle.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
