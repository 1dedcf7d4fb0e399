"""Batch segmentation on dask workers: files per second with 1 and 2 workers against the
serial batch, and the peak memory of each worker, on the same folder of images.

The folder holds F synthetic uint16 images (S x S, bright disks on noise; as in
benchmarks/batch.py). Three runs write to fresh output folders:

- serial: `inference.batch.segment_batch` in this process, the model loaded before timing;
- 1 worker, 2 workers: `inference.batch.distributed.segment_batch_on_cluster` on a
  `LocalCluster(n_workers=W, threads_per_worker=1, processes=True)` started before timing;
  the time includes each worker loading the model once (in parallel), as a user's run does.
  Each worker's torch uses cores // W threads (what `--workers W` gives it).

The model is built as in benchmarks/batch.py: seeded random base weights (no official
weights here; speed and memory do not depend on the values), adapters on, so `paper` is the
full architecture. Peak memory is each process's peak resident set (VmHWM, Linux), read at
the end of its run. Outputs of every run are compared with the serial run's, byte for byte.

Usage (from the project root; the lead runs it on a quiet machine):
    .venv/bin/python benchmarks/batch_workers.py --preset tiny --files 40 --size 256
    .venv/bin/python benchmarks/batch_workers.py --preset paper --files 16 --size 512
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import tifffile

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from batch import build_predictor, synthetic_stack  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB (VmHWM, Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_images(folder: Path, count: int, size: int) -> None:
    for index, plane in enumerate(synthetic_stack(count, size)):
        tifffile.imwrite(folder / f"image{index:03d}.tif", plane)


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_labels.tif"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", nargs="+", default=["nucleus"])
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_batch
    from napari_clip_guided_sam.inference.batch.distributed import segment_batch_on_cluster

    options = SegmentOptions(class_names=tuple(args.classes))
    # The model as benchmarks/batch.py builds it (seeded random base weights: the same model
    # in every process); the workers import `batch` from this folder.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
    )
    load = functools.partial(build_predictor, args.preset, "cpu", "fp32")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "in").mkdir()
        write_images(root / "in", args.files, args.size)
        print(f"{args.files} images of {args.size} x {args.size}, preset {args.preset}, "
              f"{cores} cores")  # fmt: skip

        predictor = load()
        start = time.perf_counter()
        for _ in segment_batch(predictor, root / "in", root / "serial", options):
            pass
        serial_s = time.perf_counter() - start
        reference = outputs(root / "serial")
        rows = [("serial (this process)", serial_s, [peak_rss_mb()])]
        del predictor

        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None,
                ) as cluster,
                Client(cluster) as client,
            ):  # fmt: skip
                client.wait_for_workers(workers)
                folder = root / f"workers{workers}"
                start = time.perf_counter()
                events = segment_batch_on_cluster(
                    client, load, root / "in", folder, options,
                    torch_threads=max(1, cores // workers),
                )  # fmt: skip
                for _ in events:
                    pass
                seconds = time.perf_counter() - start
                peaks = sorted(client.run(peak_rss_mb).values())
            if outputs(folder) != reference:
                raise SystemExit(f"{workers} worker(s): outputs differ from the serial run's")
            rows.append((f"{workers} worker(s)", seconds, peaks))

    print(f"{'run':<24}{'seconds':>9}{'files/s':>9}{'x serial':>10}  peak RSS per process (MiB)")
    for name, seconds, peaks in rows:
        rate = args.files / seconds
        print(f"{name:<24}{seconds:9.1f}{rate:9.2f}{serial_s / seconds:10.2f}  "
              f"{', '.join(f'{p:.0f}' for p in peaks)}")  # fmt: skip
    one, two = rows[1][1], rows[2][1]
    print(f"2 workers / 1 worker: {one / two:.2f}x files/s; outputs identical to the serial run")


if __name__ == "__main__":
    main()
