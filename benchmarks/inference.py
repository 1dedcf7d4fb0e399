"""Interactive inference speed: vanilla SAM against the CLIP-Guided SAM predictor.

Measures, in one process on one 1024 x 1024 RGB image:

- vanilla segment-anything `SamPredictor` (vit_b, random weights, fp32): `set_image` and one
  point `predict`;
- our `Predictor` (paper architecture: SAM ViT-B with adapters + CLIP ViT-B/16 at 512,
  random weights) at the chosen precision: the first text prompt on a new image
  (`set_image` + CLIP tokens + text feature + adapted encoder + decoder), the refresh after
  a click (prompt encoder + mask decoder only), and K = 1, 2, 4 classes on a new image.

Speed does not depend on the weight values, so random weights stand in for the official ones
(which cannot be downloaded here). Every timing is the median of `--repeats` runs, each on
a new image (or new click), after one warm-up run that also builds the cached redundant text
feature. It prints a table with ratios; nothing passes or fails.

Usage (from the project root):
    .venv/bin/python benchmarks/inference.py                  # precision auto (bf16 here)
    .venv/bin/python benchmarks/inference.py --precision fp32 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

CLASS_NAMES = ["nucleus", "cell", "mitochondrion", "membrane"]


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def synthetic_image(seed: int, size: int = 1024) -> np.ndarray:
    """A uint8 RGB image with bright disks on noise (new pixels for every seed)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(30):
        cy, cx, radius = rng.integers(0, size, 2).tolist() + [int(rng.integers(10, 40))]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.integers(150, 255)
    return image


def bench_vanilla(repeats: int, seed: int) -> dict[str, float]:
    """segment-anything's SamPredictor, vit_b, fp32."""
    from segment_anything import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    predictor = SamPredictor(sam_model_registry["vit_b"](checkpoint=None).eval())
    point, label = np.array([[512, 512]]), np.array([1])
    predictor.set_image(synthetic_image(seed))  # warm-up
    set_times, predict_times = [], []
    for run in range(repeats):
        set_times.append(timed(lambda r=run: predictor.set_image(synthetic_image(seed + 1 + r)))[0])
        predict_times.append(
            timed(lambda: predictor.predict(point, label, multimask_output=False))[0]
        )
    return {
        "set_image": statistics.median(set_times),
        "predict": statistics.median(predict_times),
    }


def bench_ours(
    precision: str, repeats: int, seed: int, decoder_threads: int | None
) -> dict[str, float]:
    """Our Predictor on the paper architecture (random weights)."""
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.model.factory import build_model

    model = build_model("paper", base_weights="random")
    model.fine_tuned = True  # time the adapted encoder, as with a fine-tuned checkpoint
    predictor = Predictor(model, device="cpu", precision=precision, decoder_threads=decoder_threads)
    predictor.segment(synthetic_image(seed), ["warm-up"])
    dtype = "fp32" if predictor.dtype is None else str(predictor.dtype).replace("torch.", "")
    results: dict[str, float] = {"dtype": dtype}

    first = []
    for run in range(repeats):
        image = synthetic_image(seed + 100 + run)
        first.append(timed(lambda i=image, r=run: predictor.segment(i, [f"nucleus {r}"]))[0])
    results["first_text_prompt"] = statistics.median(first)

    rng = np.random.default_rng(seed)
    clicks, names = [], [f"nucleus {repeats - 1}"]
    encoder_calls = predictor.stats.encoder_calls
    for _ in range(max(5, 3 * repeats)):
        point = rng.uniform(0, 1023, size=(1, 2))
        clicks.append(timed(lambda p=point: predictor.predict(names, p, np.array([1])))[0])
    if predictor.stats.encoder_calls != encoder_calls:
        raise AssertionError("a click re-ran the image encoder")
    results["click_refresh"] = statistics.median(clicks)
    results["click_refresh_min"] = min(clicks)

    for k in (1, 2, 4):
        times = []
        for run in range(repeats):
            image = synthetic_image(seed + 1000 * k + run)
            names_k = [f"{n} {k}.{run}" for n in CLASS_NAMES[:k]]
            times.append(timed(lambda i=image, n=names_k: predictor.segment(i, n))[0])
        results[f"classes_{k}"] = statistics.median(times)
    return results


def report(vanilla: dict[str, float], ours: dict[str, float], precision: str) -> None:
    one = ours["classes_1"]
    rows = [
        ("vanilla SAM set_image (fp32)", vanilla["set_image"], ""),
        ("vanilla SAM predict, 1 point (fp32)", vanilla["predict"], ""),
        (
            f"ours: first text prompt ({precision} -> {ours['dtype']})",
            ours["first_text_prompt"],
            f"{ours['first_text_prompt'] / vanilla['set_image']:.2f} x vanilla set_image "
            "(target <= 1)",
        ),
        (
            "ours: click refresh (decoder only)",
            ours["click_refresh"],
            f"{ours['click_refresh'] * 1000:.0f} ms, fastest "
            f"{ours['click_refresh_min'] * 1000:.0f} ms (target < 150 ms)",
        ),
    ]
    for k in (1, 2, 4):
        cost = ours[f"classes_{k}"]
        rows.append(
            (
                f"ours: K = {k} classes, new image",
                cost,
                f"{cost / (k * one):.2f} x K * (1 class) (target < 1 for K > 1)",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'seconds':>8}  ratio")
    for name, seconds, ratio in rows:
        print(f"{name:<{width}}  {seconds:8.3f}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--decoder-threads", type=int, default=1, help="Predictor decoder_threads (0: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    vanilla = bench_vanilla(args.repeats, args.seed)
    ours = bench_ours(args.precision, args.repeats, args.seed, args.decoder_threads or None)
    report(vanilla, ours, args.precision)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
