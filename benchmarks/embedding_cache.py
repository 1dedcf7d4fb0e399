"""Embeddings computed once: revisiting a cached slice/class against the first visit, and
precompute throughput.

In one process, on a synthetic stack of `--slices` RGB slices at the preset's SAM size and
`--classes` class names, with the preset's architecture and seeded random weights (speed
does not depend on the weight values; `paper`: SAM ViT-B with adapters + CLIP ViT-B/16):

- first visit: `Predictor.segment` of each slice with no embedding store (CLIP tokens, text
  features, adapted encoder per class, decoder) -- the baseline;
- precompute: `inference.batch.precompute.precompute_slices` into an on-disk store in a
  temporary folder (encoder + writing the entries), in slices/s;
- revisit from disk: a new predictor (empty memory caches, as in a later session) with the
  store, segmenting each slice again: disk reads + prompt encoder + mask decoder only
  (its encoder and CLIP call counts are printed, and must be 0);
- revisit from memory: the same slice again in that predictor (decoder only), for scale.

Every figure is the median over the slices after one warm-up slice; ratios are against the
first visit measured in the same process. Run it on a quiet machine (the load average is
printed before and after).

Usage (from the project root):
    .venv/bin/python benchmarks/embedding_cache.py                      # paper, 8 slices
    .venv/bin/python benchmarks/embedding_cache.py --preset tiny --slices 3   # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

CLASS_NAMES = ["nucleus", "cell", "mitochondrion", "membrane"]


def synthetic_slice(seed: int, size: int) -> np.ndarray:
    """A uint8 RGB slice with bright disks on noise (new pixels for every seed)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(20):
        cy, cx = rng.integers(0, size, 2)
        radius = int(rng.integers(size // 100 + 2, size // 25 + 3))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.integers(150, 255)
    return image


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", help="paper (vit_b); tiny for a smoke run")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--slices", type=int, default=8, help="slices in the stack (>= 2)")
    parser.add_argument("--classes", type=int, default=2, choices=[1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.slices < 2:
        parser.error("--slices must be at least 2 (one is the warm-up)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_clip_guided_sam.inference.batch.precompute import precompute_slices
    from napari_clip_guided_sam.inference.embedding_store import EmbeddingStore
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.model.factory import build_model

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, preset {args.preset}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    model = build_model(args.preset, base_weights="random")
    model.fine_tuned = True  # time the adapted encoder, as with a fine-tuned checkpoint
    size = model.config.sam.image_size
    classes = CLASS_NAMES[: args.classes]
    stack = [synthetic_slice(seed, size) for seed in range(args.slices)]

    def predictor() -> Predictor:
        return Predictor(model, device=args.device, precision=args.precision)

    plain = predictor()
    first = [seconds(lambda rgb=rgb: plain.segment(rgb, classes)) for rgb in stack]

    with tempfile.TemporaryDirectory(prefix="embedding-cache-bench-") as folder:
        store = EmbeddingStore(folder)
        writer = predictor()
        identity = seconds(lambda: writer.use_embedding_store(store))
        start = time.perf_counter()
        for _ in precompute_slices(writer, stack, len(stack), classes, "benchmark"):
            pass
        precompute = time.perf_counter() - start
        entry_mb = store.size_bytes() / len(store.entries()) / 2**20

        reader = predictor()
        reader.use_embedding_store(store)
        revisit_disk, revisit_memory = [], []
        for rgb in stack:
            reader.clear_cache()
            revisit_disk.append(seconds(lambda rgb=rgb: reader.segment(rgb, classes)))
            revisit_memory.append(seconds(lambda rgb=rgb: reader.segment(rgb, classes)))
        stats = reader.stats

    def median(times: list[float]) -> float:
        return statistics.median(times[1:])  # the first slice warms up

    base = median(first)
    rows = [
        ("first visit (no cache): tokens + encoder + decoder", base),
        ("revisit from disk (new predictor): read + decoder", median(revisit_disk)),
        ("revisit from memory (same predictor): decoder", median(revisit_memory)),
    ]
    precision = "fp32" if plain.dtype is None else str(plain.dtype).removeprefix("torch.")
    print(f"\n{args.slices} slices of {size} x {size}, {len(classes)} classes, {precision}")
    print(f"{'per slice':<56}{'median s':>10}{'vs first':>10}")
    for name, value in rows:
        print(f"{name:<56}{value:>10.3f}{value / base:>9.3f}x")
    print(
        f"\nprecompute: {args.slices / precompute:.3f} slices/s "
        f"({precompute / args.slices:.3f} s/slice, {precompute / args.slices / base:.2f}x a "
        f"first visit; first slice included)"
    )
    print(f"model identity (hash of the weights, once per predictor): {identity:.2f} s")
    print(f"cache entry: {entry_mb:.2f} MB on average (tokens, and embedding + map per class)")
    print(
        f"revisits: encoder calls {stats.encoder_calls}, CLIP calls {stats.clip_calls}, "
        f"disk hits {stats.disk_hits}, decoder calls {stats.decoder_calls}"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
