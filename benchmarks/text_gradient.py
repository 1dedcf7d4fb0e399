"""Per-step cost of the ways the CLIP text positional embedding can learn (or not).

`GuideConfig.text_gradient` and `TrainableConfig.text_positional_embedding` give three
settings; this script times each in one process, with random weights (speed does not depend
on the values):

- frozen: the text positional embedding is not trained; r is cached, the class feature is
  computed without gradient;
- class: gradient through the class-name feature, r cached without gradient;
- redundant (`reference`, the released code): r recomputed from the 85 empty-prompt
  templates with gradient at every step, the class feature without.

By default it times only the text part of a step (text features, and the backward pass to
the positional embedding where there is one) on the preset's text tower. With
`--full-step` it also times whole training steps of the preset's model (forward, backward,
AdamW) with the training engine's own `training_loss` (training/step.py). Every figure is
the median of `--repeats` runs after one warm-up; ratios are against `frozen` in the same
process.

Usage (from the project root):
    .venv/bin/python benchmarks/text_gradient.py                       # paper text tower
    .venv/bin/python benchmarks/text_gradient.py --full-step --device cuda
    .venv/bin/python benchmarks/text_gradient.py --preset tiny --full-step --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from napari_clip_guided_sam.model.config import get_preset
from napari_clip_guided_sam.model.guide import SemanticGuide, build_clip

# name -> (text positional embedding trainable, GuideConfig.text_gradient)
SETTINGS = {
    "frozen": (False, "redundant"),
    "class": (True, "class"),
    "redundant": (True, "redundant"),
}
CLASS_NAME = "nucleus"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(function, repeats: int, device: torch.device) -> float:
    function()  # warm-up (fills caches, as in training after the first step)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_text_part(preset: str, repeats: int, device: torch.device) -> dict[str, float]:
    """The text side of one training step on the preset's CLIP text tower."""
    config = get_preset(preset)
    torch.manual_seed(0)
    clip = build_clip(config.clip).to(device)
    clip.requires_grad_(False)
    probe = torch.randn(clip.text_projection.shape[1], device=device)
    results = {}
    for name, (trainable, path) in SETTINGS.items():
        guide = SemanticGuide(
            clip, config.clip, dataclasses.replace(config.guide, text_gradient=path)
        )
        clip.positional_embedding.requires_grad_(trainable)

        def step(guide=guide):
            features = guide.text_features([CLASS_NAME])
            if features.requires_grad:
                (features @ probe).sum().backward()
                clip.positional_embedding.grad = None

        results[name] = median_seconds(step, repeats, device)
    return results


def time_full_step(preset: str, repeats: int, device: torch.device) -> dict[str, float]:
    """Whole training steps (text mode, batch 1) of the preset's model."""
    from napari_clip_guided_sam.model.factory import build_model
    from napari_clip_guided_sam.model.trainable import parameter_groups
    from napari_clip_guided_sam.training.inputs import Batch
    from napari_clip_guided_sam.training.step import training_loss

    results = {}
    for name, (trainable, path) in SETTINGS.items():
        config = get_preset(preset).replace(
            **{"trainable.text_positional_embedding": trainable, "guide.text_gradient": path}
        )
        model = build_model(config, base_weights="random").to(device).train()
        optimizer = torch.optim.AdamW(parameter_groups(model, 5e-5, 1e-7, 1e-3, 0.0))
        size = config.sam.image_size
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(1, 3, size, size, generator=generator)
        masks = torch.rand(1, size, size, generator=generator) > 0.5
        batch = Batch(images, masks, [CLASS_NAME])

        def step(model=model, optimizer=optimizer, batch=batch):
            points = torch.Generator().manual_seed(0)
            training_loss(model, batch, "text", points, device, None).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        results[name] = median_seconds(step, repeats, device)
        del model, optimizer
    return results


def report(title: str, results: dict[str, float]) -> None:
    base = results["frozen"]
    print(f"\n{title}")
    print(f"{'setting':<10} {'seconds':>9}  ratio to frozen")
    for name, seconds in results.items():
        print(f"{name:<10} {seconds:>9.4f}  {seconds / base:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--full-step", action="store_true", help="also time whole steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"preset {args.preset}, device {device}, fp32, {torch.get_num_threads()} CPU thread(s)")
    report("text part of one training step", time_text_part(args.preset, args.repeats, device))
    if args.full_step:
        report("whole training step", time_full_step(args.preset, args.repeats, device))


if __name__ == "__main__":
    main()
