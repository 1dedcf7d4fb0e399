"""Interactive inference speed: vanilla SAM against the CLIP-Guided SAM predictor.

Measures, in one process on 1024 x 1024 RGB images:

- the machine: CPU, threads, the matrix-multiply peak in fp32 and bf16 (4096^3, autocast as
  the models use it) and what `--precision auto` chose and why;
- vanilla segment-anything `SamPredictor` (vit_b, random weights, its own unfused code):
  `set_image` in fp32 and in bf16 autocast (the faster is "vanilla's best"), and a
  one-point `predict`;
- our `Predictor` (paper architecture: SAM ViT-B with adapters + CLIP ViT-B/16 at 512,
  random weights) at the chosen precision with fused attention: the first text prompt on a
  new image (`set_image` + CLIP tokens + text feature + adapted encoder + decoder), the
  refresh after a click (prompt encoder + mask decoder only), and K = 1, 2, 4 classes;
- the same first text prompt with fused attention switched off, and (with `--compile`) with
  the image encoder compiled: its first call (compilation included) and the next images;
- the FLOPs of one first text prompt (counted by torch's FlopCounterMode) and the bound they
  set at the measured peak of the chosen precision.

Speed does not depend on the weight values, so random weights stand in for the official
ones. Every timing is the median of `--repeats` runs, each on a new image (or new click),
after one warm-up run. It prints a table with ratios against the issue's targets; nothing
passes or fails. Run it on a quiet machine (the load average is printed before and after).

Usage (from the project root):
    .venv/bin/python benchmarks/inference.py                    # precision auto
    .venv/bin/python benchmarks/inference.py --compile          # + torch.compile (minutes)
    .venv/bin/python benchmarks/inference.py --precision fp32 --repeats 2
    .venv/bin/python benchmarks/inference.py --first-prompt-only   # the main ratio, quickly
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

CLASS_NAMES = ["nucleus", "cell", "mitochondrion", "membrane"]
PEAK_SHAPE = (4096, 4096, 4096)


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


def machine() -> dict:
    """Matmul peaks (GFLOP/s) and the automatic precision choice, measured now."""
    from napari_clip_guided_sam.model.precision_probe import measure_gflops, probe_precision

    device = torch.device("cpu")
    choice = probe_precision(device, force=True)
    peaks = measure_gflops(device, ("fp32", "bf16"), shape=PEAK_SHAPE, rounds=3)
    return {"choice": choice, "peaks": peaks}


def bench_vanilla(
    preset: str, repeats: int, seed: int, bf16_repeats: int, size: int
) -> dict[str, float]:
    """segment-anything's SamPredictor with its own modules (vit_b for `paper`): set_image
    in fp32 and bf16 autocast, one-point predict in fp32."""
    from segment_anything import SamPredictor

    from napari_clip_guided_sam.model.config import get_preset
    from napari_clip_guided_sam.model.sam import build_sam

    torch.manual_seed(0)
    predictor = SamPredictor(build_sam(get_preset(preset).sam))
    point, label = np.array([[size // 2, size // 2]]), np.array([1])
    results: dict[str, float] = {}
    for name, dtype, runs in (("fp32", None, repeats), ("bf16", torch.bfloat16, bf16_repeats)):
        if not runs:
            continue
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            predictor.set_image(synthetic_image(seed, size))  # warm-up
            times = []
            for run in range(runs):
                image = synthetic_image(seed + 1 + run, size)
                times.append(timed(lambda i=image: predictor.set_image(i))[0])
        results[f"set_image_{name}"] = statistics.median(times)
    predictor.set_image(synthetic_image(seed, size))
    clicks = [
        timed(lambda: predictor.predict(point, label, multimask_output=False))[0]
        for _ in range(max(5, 3 * repeats))
    ]
    results["predict"] = statistics.median(clicks)
    return results


def _new_predictor(preset: str, precision: str, decoder_threads: int | None, fused: bool = True):
    from napari_clip_guided_sam.inference.predictor import Predictor
    from napari_clip_guided_sam.model.attention import use_fused_attention
    from napari_clip_guided_sam.model.factory import build_model

    model = build_model(preset, base_weights="random")
    model.fine_tuned = True  # time the adapted encoder, as with a fine-tuned checkpoint
    use_fused_attention(model, fused)
    return Predictor(model, device="cpu", precision=precision, decoder_threads=decoder_threads)


def first_prompts(predictor, repeats: int, seed: int, tag: str) -> list[float]:
    """Seconds of `repeats` first text prompts, each on a new image and a new class name."""
    times = []
    for run in range(repeats):
        image = synthetic_image(seed + run, predictor.config.sam.image_size)
        times.append(timed(lambda i=image, r=run: predictor.segment(i, [f"{tag} {r}"]))[0])
    return times


def bench_ours(
    preset: str, precision: str, repeats: int, seed: int, decoder_threads: int | None
) -> dict[str, float]:
    """Our Predictor (random weights), fused attention."""
    predictor = _new_predictor(preset, precision, decoder_threads)
    size = predictor.config.sam.image_size
    predictor.segment(synthetic_image(seed, size), ["warm-up"])
    dtype = "fp32" if predictor.dtype is None else str(predictor.dtype).replace("torch.", "")
    results: dict[str, float] = {"dtype": dtype}
    first = first_prompts(predictor, repeats, seed + 100, "nucleus")
    results["first_text_prompt"] = statistics.median(first)

    rng = np.random.default_rng(seed)
    clicks, names = [], [f"nucleus {repeats - 1}"]
    encoder_calls = predictor.stats.encoder_calls
    for _ in range(max(5, 3 * repeats)):
        point = rng.uniform(0, size - 1, size=(1, 2))
        clicks.append(timed(lambda p=point: predictor.predict(names, p, np.array([1])))[0])
    if predictor.stats.encoder_calls != encoder_calls:
        raise AssertionError("a click re-ran the image encoder")
    results["click_refresh"] = statistics.median(clicks)
    results["click_refresh_min"] = min(clicks)

    for k in (1, 2, 4):
        times = []
        for run in range(repeats):
            image = synthetic_image(seed + 1000 * k + run, size)
            names_k = [f"{n} {k}.{run}" for n in CLASS_NAMES[:k]]
            times.append(timed(lambda i=image, n=names_k: predictor.segment(i, n))[0])
        results[f"classes_{k}"] = statistics.median(times)
    return results


def bench_unfused_and_flops(
    preset: str, precision: str, repeats: int, seed: int
) -> dict[str, float]:
    """First text prompt with segment-anything's own attention, and its FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    predictor = _new_predictor(preset, precision, None, fused=False)
    size = predictor.config.sam.image_size
    predictor.segment(synthetic_image(seed, size), ["warm-up"])
    first = first_prompts(predictor, repeats, seed + 200, "unfused")
    # Unfused, every product is a counted matmul (the CPU's fused kernel is not counted).
    with FlopCounterMode(display=False) as counter:
        predictor.segment(synthetic_image(seed + 300, size), ["counted"])
    return {"first_text_prompt": statistics.median(first), "flops": counter.get_total_flops()}


def bench_compiled(preset: str, precision: str, seed: int) -> dict[str, float]:
    """First text prompts with the image encoder compiled: the first one compiles."""
    from napari_clip_guided_sam.model.compilation import compile_image_encoder

    predictor = _new_predictor(preset, precision, None)
    size = predictor.config.sam.image_size
    predictor.segment(synthetic_image(seed, size), ["warm-up"])  # CLIP and text paths, eager
    if not compile_image_encoder(predictor.model):
        raise SystemExit(f"{preset} runs its image encoder block by block: nothing to compile")
    times = first_prompts(predictor, 4, seed + 400, "compiled")
    return {"first_with_compile": times[0], "steady": statistics.median(times[1:])}


def first_prompt_only(preset: str, precision: str, repeats: int, seed: int) -> None:
    """Vanilla `set_image` in fp32 and our first text prompt, nothing else: a quick check
    of their ratio (for instance under another allocator setting)."""
    from napari_clip_guided_sam.model.config import get_preset

    size = get_preset(preset).sam.image_size
    vanilla = bench_vanilla(preset, repeats, seed, 0, size)["set_image_fp32"]
    predictor = _new_predictor(preset, precision, None)
    predictor.segment(synthetic_image(seed, size), ["warm-up"])
    ours = statistics.median(first_prompts(predictor, repeats, seed + 100, "nucleus"))
    print(f"vanilla SAM set_image, fp32  {vanilla:8.3f}")
    print(f"ours: first text prompt      {ours:8.3f}  {ours / vanilla:.2f} x vanilla fp32")


def report(info: dict, vanilla: dict, ours: dict, unfused: dict, compiled: dict | None) -> None:
    peaks, choice = info["peaks"], info["choice"]
    best_vanilla = min(vanilla["set_image_fp32"], vanilla["set_image_bf16"])
    best_name = "fp32" if vanilla["set_image_fp32"] <= vanilla["set_image_bf16"] else "bf16"
    peak = peaks[ours["dtype"] if ours["dtype"] in peaks else "fp32"]
    bound = unfused["flops"] / (peak * 1e9)
    first = ours["first_text_prompt"]
    one = ours["classes_1"]
    click_target = vanilla["predict"] + 0.020
    rows = [
        ("vanilla SAM set_image, fp32", vanilla["set_image_fp32"], ""),
        ("vanilla SAM set_image, bf16 autocast", vanilla["set_image_bf16"], ""),
        ("vanilla SAM predict, 1 point (fp32)", vanilla["predict"], ""),
        (
            f"ours: first text prompt ({ours['dtype']}, fused attention)",
            first,
            f"{first / best_vanilla:.2f} x vanilla best ({best_name}) (target <= 0.8); "
            f"{first / bound:.2f} x FLOP bound (target <= 2.5)",
        ),
        (
            "ours: first text prompt, unfused attention",
            unfused["first_text_prompt"],
            f"fused is {unfused['first_text_prompt'] / first:.2f}x faster",
        ),
        (
            "ours: click refresh (decoder only)",
            ours["click_refresh"],
            f"{(ours['click_refresh'] - vanilla['predict']) * 1000:+.0f} ms vs vanilla predict, "
            f"fastest {ours['click_refresh_min'] * 1000:.0f} ms "
            f"(target <= {click_target * 1000:.0f} ms)",
        ),
    ]
    for k in (1, 2, 4):
        cost = ours[f"classes_{k}"]
        target = " (target <= 0.8)" if k == 4 else ""
        rows.append(
            (
                f"ours: K = {k} classes, new image",
                cost,
                f"{cost / (k * one):.2f} x K x (1 class){target}",
            )
        )
    if compiled is not None:
        eager3 = 3 * first
        compiled3 = compiled["first_with_compile"] + 2 * compiled["steady"]
        rows += [
            ("ours compiled: first image (compiles)", compiled["first_with_compile"], ""),
            (
                "ours compiled: next images",
                compiled["steady"],
                f"{first / compiled['steady']:.2f}x eager; 3 images {compiled3:.0f} s vs "
                f"{eager3:.0f} s eager: {'wins' if compiled3 < eager3 else 'loses'}",
            ),
        ]
    print(
        f"\nmatmul peak ({'x'.join(map(str, PEAK_SHAPE))}): fp32 {peaks['fp32']:.0f}, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    print(f"precision auto -> {choice.precision}: {choice.reason}")
    print(
        f"first text prompt: {unfused['flops'] / 1e9:.1f} GFLOP; bound at the {ours['dtype']} "
        f"peak {bound:.2f} s"
    )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'seconds':>8}  ratio")
    for name, seconds, ratio in rows:
        print(f"{name:<{width}}  {seconds:8.3f}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", help="paper (vit_b); tiny for a smoke run")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--decoder-threads", type=int, default=0, help="Predictor decoder_threads (0: auto)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the compiled encoder (minutes)"
    )
    parser.add_argument(
        "--first-prompt-only",
        action="store_true",
        help="only vanilla set_image in fp32 and our first text prompt (a quick ratio)",
    )
    args = parser.parse_args()
    from napari_clip_guided_sam.model.config import get_preset

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, preset {args.preset}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    if args.first_prompt_only:
        first_prompt_only(args.preset, args.precision, args.repeats, args.seed)
        return
    info = machine()
    print(f"cpu: {info['choice'].machine}", flush=True)
    # bf16 far below fp32's peak (no native bf16): one timed run says enough.
    bf16_slow = info["peaks"]["bf16"] < 0.5 * info["peaks"]["fp32"]
    size = get_preset(args.preset).sam.image_size
    vanilla = bench_vanilla(
        args.preset, args.repeats, args.seed, 1 if bf16_slow else args.repeats, size
    )
    threads = args.decoder_threads or None
    ours = bench_ours(args.preset, args.precision, args.repeats, args.seed, threads)
    unfused = bench_unfused_and_flops(args.preset, args.precision, args.repeats, args.seed)
    compiled = None
    if args.compile:
        compiled = bench_compiled(args.preset, args.precision, args.seed)
    report(info, vanilla, ours, unfused, compiled)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
