"""A training step alone and beside busy torch processes: the thread policy against the old way.

Issue 13 saw a tiny-preset training step slow down 3.2x beside one other busy torch process
(ideal: 2x on a machine shared by two) and about 40x (75 ms -> 3 s) beside three. This
script measures the training engine's step (`training.train`, text mode, batch 1, synthetic
images as in `train_step.py`) in three variants, each in a fresh process because OpenMP
reads its wait policy when torch loads:

- old: torch's default thread count for every step and OpenMP's default wait (libgomp
  spins about 3 ms after each parallel region), the behaviour before the thread policy;
- policy: the thread count of `model.threads` (the CPUs other processes leave free, chosen
  at every step), OpenMP's default wait;
- policy + passive wait: the same with `OMP_WAIT_POLICY=PASSIVE` (OpenMP threads sleep
  at once after each parallel region), measured to decide whether the project should set
  it (it does not: see docs/performance.md).

Each runs alone, then beside 1 and 3 busy processes: separate programs (each in its own
session, as a job started elsewhere is) multiplying matrices in a loop with torch's default
threads and wait. It prints seconds per step (median of `--steps` after `--warmup`) and the
slowdown against the same variant alone and against the old variant alone; the goal is at
most 2.5x beside one and no worse than proportional (1 + n times) beside n. Linux's
scheduler shares the CPUs between sessions when autogroup is on (printed), between threads
otherwise.

    .venv/bin/python benchmarks/threads_under_load.py                   # tiny, a few minutes
    .venv/bin/python benchmarks/threads_under_load.py --preset paper --steps 3 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "old": {"policy": False, "passive": False},
    "policy": {"policy": True, "passive": False},
    "policy + passive wait": {"policy": True, "passive": True},
}
GOAL = {1: 2.5, 3: 4.0}  # at most 2.5x beside one; proportional, 1 + 3, beside three
CONTROLLED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CLIP_GUIDED_SAM_THREADS")

BUSY_CODE = """
import torch
a = torch.randn(768, 768)
b = torch.randn(768, 768)
a @ b
print("ready", flush=True)
while True:
    (a @ b).relu_()
"""


def measure(preset: str, steps: int, warmup: int, policy: bool) -> dict:
    """In a child: the training engine's seconds per step, with or without the policy."""
    import torch
    from train_step import synthetic_samples

    from napari_clip_guided_sam.model.factory import build_model
    from napari_clip_guided_sam.model.threads import THREADS_ENV
    from napari_clip_guided_sam.training import StepEvent, TrainingConfig, train

    if not policy:  # torch's default count, fixed: what every step used before the policy
        os.environ[THREADS_ENV] = str(torch.get_num_threads())
    model = build_model(preset, base_weights="random")
    config = TrainingConfig(
        epochs=1, max_steps=warmup + steps, device="cpu", precision="fp32", augment=False
    )
    samples = synthetic_samples(warmup + steps, model.config.sam.image_size)
    times, last = [], time.perf_counter()
    for event in train(model, samples, None, config):
        if isinstance(event, StepEvent):
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return {"step_s": statistics.median(times[warmup:]), "threads": torch.get_num_threads()}


def clean_environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env.update(values)
    return env


def start_busy(count: int) -> list[subprocess.Popen]:
    """`count` busy torch processes, each in its own session, running once this returns."""
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", BUSY_CODE],
            stdout=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            start_new_session=True,
        )
        for _ in range(count)
    ]
    for process in busy:
        process.stdout.readline()  # "ready"
    return busy


def stop(busy: list[subprocess.Popen]) -> None:
    for process in busy:
        process.kill()
        process.wait()


def run_child(args, variant: str) -> dict | None:
    options = VARIANTS[variant]
    env = clean_environment(**({"OMP_WAIT_POLICY": "PASSIVE"} if options["passive"] else {}))
    command = [sys.executable, __file__, "--child", variant, "--preset", args.preset]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=args.timeout, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def autogroup() -> str:
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "unknown"
    return "on (CPUs shared between sessions)" if on else "off (CPUs shared between threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds a run may take before it is cut"
    )
    parser.add_argument(
        "--busy", default="0,1,3", help="busy process counts to run beside (0 must be one)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one variant, in a child
    args = parser.parse_args()
    if args.child:
        result = measure(args.preset, args.steps, args.warmup, VARIANTS[args.child]["policy"])
        print(json.dumps(result))
        return

    from napari_clip_guided_sam.model.threads import usable_cpus

    print(
        f"preset {args.preset}, {usable_cpus()} usable CPUs, autogroup {autogroup()}; "
        f"{args.steps} timed steps after {args.warmup}"
    )
    print(f"load average before: {load()}", flush=True)
    seconds: dict[tuple[str, int], float | None] = {}
    counts = sorted({int(text) for text in args.busy.split(",")} | {0})
    for count in counts:
        busy = start_busy(count)
        try:
            time.sleep(1.0 if count else 0.0)  # let the busy processes settle
            for variant in VARIANTS:
                result = run_child(args, variant)
                seconds[variant, count] = None if result is None else result["step_s"]
                shown = "cut" if result is None else f"{result['step_s']:.3f} s"
                print(f"  beside {count} busy: {variant}: {shown}", flush=True)
        finally:
            stop(busy)
    print(f"load average after: {load()}\n")

    old_alone = seconds["old", 0]
    header = f"{'variant':<22} {'alone s':>8}"
    for count in counts[1:]:
        header += f" {f'{count} busy s':>9} {'x alone':>8} {'x old alone':>11}"
    print(header)
    for variant in VARIANTS:
        alone = seconds[variant, 0]
        row = f"{variant:<22} {_number(alone, 8)}"
        for count in counts[1:]:
            value = seconds[variant, count]
            row += f" {_number(value, 9)} {_ratio(value, alone, 8)} {_ratio(value, old_alone, 11)}"
        print(row)
    goals = ", ".join(f"<= {limit:g}x beside {count}" for count, limit in GOAL.items())
    print(f"goal: {goals} (x alone)")
    final = "policy"  # the project's default
    verdicts = []
    for count, limit in GOAL.items():
        if count not in counts:
            continue
        value, alone = seconds[final, count], seconds[final, 0]
        met = value is not None and alone is not None and value / alone <= limit
        verdicts.append(f"beside {count}: {'met' if met else 'not met'}")
    print(f"{final}: " + "; ".join(verdicts))


def _number(value: float | None, width: int) -> str:
    return f"{'cut':>{width}}" if value is None else f"{value:{width}.3f}"


def _ratio(value: float | None, base: float | None, width: int) -> str:
    if value is None or base is None:
        return f"{'-':>{width}}"
    return f"{value / base:{width - 1}.2f}x"


if __name__ == "__main__":
    main()
