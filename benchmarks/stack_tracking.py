"""Benchmark: objects followed through a 3D stack by the `tiny` preset after a short fine-tune.

No real 3D stack with slice-consistent instance labels can be had offline here, so the test
stacks are built from real DSB2018 images and their nucleus labels (BBBC038v1, CC0): each
held-out image becomes a Z stack in which every nucleus is a ball cut at a random height
(its section shrinks towards its poles, and it is absent above and below them) while the
whole field drifts and deforms smoothly from slice to slice. The pixels inside nuclei are the
image's own, the labels keep one id per nucleus on every slice. Removed nuclei are filled
with the image's smoothed background plus its noise.

The model is fine-tuned (text mode, `--budget-s` of training time) on the training split of
DSB2018, which holds none of the test images. Then, on the test stacks:

1. propagation from one clicked slice: for every nucleus seen on at least 3 slices, one
   positive click at its centre on its largest section gives the committed mask, which is
   propagated both ways; the score is the fraction of the nucleus's slices (and of slices
   given a mask) with IoU >= 0.5, averaged over nuclei, for several prompt choices. The
   baseline copies the clicked mask onto every slice of the nucleus (its true extent: an
   oracle on where it ends);
2. text instances linked across slices (watershed, `--link-slices`): id switches per 100
   nuclei and the share of nucleus sections matched, against per-slice numbering; linking
   the true per-slice sections (renumbered per slice) shows the linker's own error;
3. context: text-only foreground IoU on the test slices, beside the per-image Otsu baseline.

    python benchmarks/stack_tracking.py --budget-s 120
    python benchmarks/stack_tracking.py --budget-s 20 --n-stacks 1 --slices 8   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_clip_guided_sam.data.class_map import ClassMap
from napari_clip_guided_sam.data.datasets import SliceDataset, train_val_split
from napari_clip_guided_sam.data.folders import match_by_stem
from napari_clip_guided_sam.data.image import ImageData
from napari_clip_guided_sam.data.reader import read_image
from napari_clip_guided_sam.evaluation.tracking import count_id_switches, slice_success
from napari_clip_guided_sam.inference.batch import SegmentOptions, segment_stack_to_array
from napari_clip_guided_sam.inference.instances import InstanceConfig
from napari_clip_guided_sam.inference.linking import link_stack
from napari_clip_guided_sam.inference.objects import ObjectPrompt
from napari_clip_guided_sam.inference.predictor import Predictor
from napari_clip_guided_sam.inference.propagation import PropagationConfig, mask_iou, propagate
from napari_clip_guided_sam.model.factory import build_model
from napari_clip_guided_sam.training import (
    StepEvent,
    TrainingConfig,
    default_learning_rates,
    train,
)
from napari_clip_guided_sam.training.inputs import Subset

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"
N_HELD_OUT = 106
CLASS = "nucleus"
BASE = PropagationConfig(min_predicted_iou=0.0)  # the IoU head is not fine-tuned (docs)
VARIANTS = {
    "box+points+mask": BASE,
    "points+mask": dataclasses.replace(BASE, use_box=False),
    "mask only": dataclasses.replace(BASE, use_box=False, n_points=0),
    "box+points": dataclasses.replace(BASE, use_mask=False),
    "box+points+text": dataclasses.replace(BASE, use_mask=False, text_guide=True),
}


@dataclasses.dataclass
class Stack:
    name: str
    images: np.ndarray  # uint8 [Z, H, W, 3]
    labels: np.ndarray  # int32 [Z, H, W], one id per nucleus on every slice


# ---------------------------------------------------------------------------- test stacks
def _background(image: np.ndarray, labels: np.ndarray, rng) -> np.ndarray:
    """The image's background with the nuclei removed: a smoothed background (normalised
    convolution over background pixels) plus noise of the background's own spread."""
    grey = image.astype(np.float64)
    outside = ndi.binary_erosion(labels == 0, iterations=2)
    weight = ndi.gaussian_filter(outside.astype(np.float64), 8)
    smooth = (
        np.stack([ndi.gaussian_filter(grey[..., c] * outside, 8) for c in range(3)], axis=-1)
        / np.maximum(weight, 1e-6)[..., None]
    )
    spread = (grey[outside] - smooth[outside]).std(axis=0) if outside.any() else np.zeros(3)
    return smooth + rng.normal(0.0, 1.0, grey.shape) * spread


def _smooth_field(shape, rng, amplitude: float, sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.normal(size=(2, *shape)), (0, sigma, sigma))
    return amplitude * field / max(np.abs(field).max(), 1e-9)


def make_stack(name, image, labels, n_slices, rng, size=256) -> Stack:
    """A Z stack from one 2D image and its instance labels (see the module docstring)."""
    top = max(0, (image.shape[0] - size) // 2)
    left = max(0, (image.shape[1] - size) // 2)
    image = image[top : top + size, left : left + size]
    labels = labels[top : top + size, left : left + size].astype(np.int32)
    background = _background(image, labels, rng)
    ids = np.setdiff1d(np.unique(labels), [0])
    depth = ndi.distance_transform_edt(labels > 0)  # per pixel: distance to its boundary
    deepest = ndi.maximum(depth, labels, ids)
    centres = rng.uniform(0, n_slices - 1, len(ids))
    half_heights = rng.uniform(3, max(3.5, n_slices / 2), len(ids))
    shape = labels.shape
    drift = rng.normal(size=2)
    drift = 0.8 * drift / np.linalg.norm(drift)  # px per slice
    field = np.zeros((2, *shape))
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    images, stack_labels = [], []
    for z in range(n_slices):
        section = np.clip(1 - ((z - centres) / half_heights) ** 2, 0, None) ** 0.5
        section = np.where(section < 0.3, 0.0, section)  # slivers near a pole are gone
        keep_depth = np.zeros(int(ids.max(initial=0)) + 1)
        keep_depth[ids] = np.where(section > 0, (1 - section) * deepest, np.inf)
        kept = (labels > 0) & (depth >= keep_depth[labels])
        slice_labels = np.where(kept, labels, 0)
        slice_image = np.where(kept[..., None], image, background)
        if z:
            field += _smooth_field(shape, rng, 0.5, 24)
        dy, dx = field[0] + z * drift[0], field[1] + z * drift[1]
        coords = np.stack([rows - dy, cols - dx])
        warped = np.stack(
            [
                ndi.map_coordinates(slice_image[..., c], coords, order=1, mode="nearest")
                for c in range(3)
            ],
            axis=-1,
        )
        images.append(np.clip(warped, 0, 255).astype(np.uint8))
        stack_labels.append(
            ndi.map_coordinates(slice_labels, coords, order=0, mode="constant", cval=0)
        )
    return Stack(name, np.stack(images), np.stack(stack_labels).astype(np.int32))


def load(data: Path, n_stacks: int, n_slices: int, seed: int):
    """Training subset of DSB2018 and test stacks from held-out images with 5-80 nuclei."""
    dataset = SliceDataset.from_folders(
        data / "images", data / "labels", ClassMap.single_class(CLASS), cache_size=0
    )
    matches = list(match_by_stem(data / "images", data / "labels"))
    assert len(matches) == len(dataset), "every pair is one item"
    train_indices, held_out = train_val_split(dataset, N_HELD_OUT / len(dataset), seed=0)
    rng = np.random.default_rng(seed)
    stacks = []
    for index in held_out:
        labels = np.asarray(read_image(matches[index][1]).array)
        crop = labels[: min(256, labels.shape[0]), : min(256, labels.shape[1])]
        if not 5 <= len(np.unique(crop)) - 1 <= 80:
            continue
        name = matches[index][0].stem[:8]
        stacks.append(make_stack(name, dataset[index].image, labels, n_slices, rng))
        if len(stacks) == n_stacks:
            break
    return Subset(dataset, train_indices), stacks


# ---------------------------------------------------------------------------- scores
def run(events):
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


def propagation_scores(predictor: Predictor, stack: Stack) -> dict[str, list[float]]:
    """Per nucleus (seen on >= 3 slices): slice success of each variant and the baseline,
    and SAM's predicted IoU on good and bad slices."""
    scores: dict[str, list[float]] = {name: [] for name in [*VARIANTS, "copy (oracle extent)"]}
    scores["clicked mask IoU"] = []
    n_slices = len(stack.images)
    ious: dict[bool, list[float]] = {True: [], False: []}
    for object_id in np.setdiff1d(np.unique(stack.labels), [0]):
        truth = stack.labels == object_id
        areas = truth.sum(axis=(1, 2))
        if (areas > 0).sum() < 3:
            continue
        start = int(areas.argmax())
        depth = ndi.distance_transform_edt(truth[start])
        row, col = np.unravel_index(int(depth.argmax()), depth.shape)
        click = ObjectPrompt(points=[[col, row]], point_labels=[1])
        clicked = predictor.segment_objects(stack.images[start], CLASS, [click]).masks[0]
        scores["clicked mask IoU"].append(mask_iou(clicked, truth[start]))
        copy = np.zeros_like(truth)
        copy[areas > 0] = clicked
        scores["copy (oracle extent)"].append(slice_success(copy, truth))
        for name, config in VARIANTS.items():
            predicted = np.zeros_like(truth)
            if clicked.any():
                events = propagate(
                    predictor, lambda z: stack.images[z], n_slices, start, clicked, CLASS, config
                )
                result = run(events)
                for z, mask in result.masks.items():
                    predicted[z] = mask
                    if name == "box+points+mask" and z != start:
                        good = mask_iou(mask, truth[z]) >= 0.5
                        ious[good].append(result.predicted_iou[z])
            scores[name].append(slice_success(predicted, truth))
    scores["predicted IoU, good slices"] = ious[True]
    scores["predicted IoU, bad slices"] = ious[False]
    return scores


def linking_scores(predictor: Predictor, stack: Stack, rng) -> dict[str, tuple[int, ...]]:
    """(switches, nuclei, matched sections, present sections) of text instances, linked and
    numbered per slice, and of the true sections numbered per slice and linked."""
    image = ImageData(stack.images, "ZYXC")
    found = {}
    for name, link in (("text, linked", True), ("text, per slice", False)):
        options = SegmentOptions((CLASS,), instances=InstanceConfig(), link_slices=link)
        found[name] = run(segment_stack_to_array(predictor, image, options))
    shuffled = np.zeros_like(stack.labels)
    for z, section in enumerate(stack.labels):  # per-slice numbering of the true sections
        ids = np.setdiff1d(np.unique(section), [0])
        lookup = np.zeros(int(stack.labels.max()) + 1, dtype=np.int32)
        lookup[ids] = rng.permutation(len(ids)) + 1
        shuffled[z] = lookup[section]
    found["true sections, per slice"] = shuffled
    found["true sections, linked"] = link_stack(shuffled)
    out = {}
    for name, labels in found.items():
        score = count_id_switches(labels.astype(np.int64), stack.labels)
        out[name] = (score.switches, score.objects, score.matched, score.present)
    return out


def foreground_scores(predictor: Predictor, stack: Stack) -> tuple[list[float], list[float]]:
    """Per-slice foreground IoU of the text prompt and of a per-image Otsu threshold."""
    model, otsu = [], []
    for image, labels in zip(stack.images, stack.labels, strict=True):
        truth = labels > 0
        model.append(mask_iou(predictor.segment(image, [CLASS]).labels > 0, truth))
        grey = image.astype(np.float64).mean(axis=-1)
        above = grey > threshold_otsu(grey)
        otsu.append(mask_iou(above if above.mean() <= 0.5 else ~above, truth))
    return model, otsu


def main() -> None:
    lr, clip_lr = default_learning_rates("tiny")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="DSB2018 folder")
    parser.add_argument("--budget-s", type=float, default=120.0, help="fine-tuning time")
    parser.add_argument("--n-stacks", type=int, default=3)
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    train_data, stacks = load(args.data.resolve(), args.n_stacks, args.slices, args.seed)
    nuclei = sum(len(np.unique(s.labels)) - 1 for s in stacks)
    print(
        f"{len(stacks)} test stacks of {args.slices} slices ({nuclei} nuclei) from held-out "
        f"DSB2018 images; fine-tuning tiny on {len(train_data)} others for {args.budget_s:.0f} s",
        flush=True,
    )
    model = build_model("tiny", seed=args.seed)
    config = TrainingConfig(
        epochs=10_000, lr=lr, clip_lr=clip_lr, mode="text", seed=args.seed, device="cpu",
        precision="fp32", time_budget_s=args.budget_s,
    )  # fmt: skip
    steps = sum(isinstance(event, StepEvent) for event in train(model, train_data, None, config))
    print(f"fine-tuned: {steps} steps, {time.perf_counter() - started:.0f} s so far", flush=True)
    predictor = Predictor(model, "cpu", "fp32", cache_size=args.slices + 1)

    fg_model, fg_otsu, propagation, linking = [], [], {}, {}
    rng = np.random.default_rng(args.seed)
    for stack in stacks:
        model_iou, otsu_iou = foreground_scores(predictor, stack)
        fg_model += model_iou
        fg_otsu += otsu_iou
        for name, values in propagation_scores(predictor, stack).items():
            propagation.setdefault(name, []).extend(values)
        for name, counts in linking_scores(predictor, stack, rng).items():
            linking[name] = tuple(int(v) for v in np.add(linking.get(name, (0,) * 4), counts))
        predictor.clear_cache()

    print(f"\ntext foreground IoU per slice: model {np.mean(fg_model):.3f}, "
          f"per-image Otsu {np.mean(fg_otsu):.3f}")  # fmt: skip
    followed = len(propagation["box+points+mask"])
    print(f"\npropagation from one click, {followed} nuclei on >= 3 slices "
          "(mean fraction of slices with IoU >= 0.5):")  # fmt: skip
    baseline = np.mean(propagation["copy (oracle extent)"])
    for name in [*VARIANTS, "copy (oracle extent)"]:
        value = np.mean(propagation[name])
        print(f"  {name:<22} {value:.3f}   ({value / max(baseline, 1e-9):.2f}x the copy)")
    print(f"  clicked start mask IoU {np.mean(propagation['clicked mask IoU']):.3f}")
    for name in ("predicted IoU, good slices", "predicted IoU, bad slices"):
        values = propagation[name]
        print(f"  SAM {name}: {np.mean(values) if values else float('nan'):.3f} ({len(values)})")
    print("\nid switches per 100 nuclei (share of nucleus sections matched at IoU > 0.5):")
    for name, (switches, objects, matched, present) in linking.items():
        per_100 = 100 * switches / max(objects, 1)
        print(f"  {name:<26} {per_100:7.1f}  ({matched / max(present, 1):.2f} matched)")
    for kind in ("text", "true sections"):
        linked, per_slice = linking[f"{kind}, linked"][0], linking[f"{kind}, per slice"][0]
        print(f"  {kind}: linked / per-slice switches = {linked / max(per_slice, 1):.3f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
