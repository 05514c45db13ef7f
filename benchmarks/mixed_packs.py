"""The packed models a sweep's trial trains, timed: each pack of the trial at one point of the spec
(by default the first of the robustness specs'), with the members a trial gives it (`pack_groups`,
configuration after configuration, each with all its seeds): trial-steps per second, GFLOP/s and
the fraction of the matmul peak, and its time a step over that of a pack of as many members of one
configuration of the same shape, the two timed in six paired rounds (drm.autotune.paired: the
median of the rounds' ratios, which a slow spell of the machine moves on both sides).

    python benchmarks/mixed_packs.py [--device cuda] [--seconds 1] [--spec sweeps/robustness-2d.yaml ...]

A mixed pack's members differ in their map's frequency and in ε (drm.config.check_pack): its step is
the homogeneous one plus a frequency per member and the second-derivative stream wherever one
member has ε > 0; `mixed_time_over_one_config` above 1 is what mixing costs.

FLOPs are counted per member from its own configuration (`pipeline.bench.flops_per_trial_step`): an
ε = 0 member that rides along with the second-derivative stream is charged without it, so work a
member does not need never raises a figure; `of peak` divides by the dense-matmul rate measured in
the same run (`drmfm bench`'s). On CUDA each pack is timed replayed from a CUDA graph (what a trial
does) and eagerly; `step_mode` says whether the capture held. On a CPU the step runs on the
process's threads (a trial takes its spec's `resources.cpu`), in chunks of the 12 MiB rule, with the
passes fused where the trial's epochs call for it (a trial's tuning may keep the eager ones): the
same for both packs, so the two differ only in what is mixed.

JSON on standard output, progress on standard error. BENCHMARKS.md records what it printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from drm import autotune
from drm._allocator import keep_freed_memory
from drm.config import TrainConfig
from drm.train import MIN_EPOCHS_TO_FUSE, PackedTrainer
from pipeline.bench import flops_per_trial_step, matmul_peak_gflops, time_steps
from pipeline.spec import SweepSpec, load_spec
from pipeline.tune_trial import pack_groups

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5  # steps before a pack is timed: a graphed trainer runs 3 eagerly, then captures its graph
SPECS = [ROOT / "sweeps" / "robustness-1d.yaml", ROOT / "sweeps" / "robustness-2d.yaml"]


def trial_packs(spec: SweepSpec, point: dict) -> list[list[TrainConfig]]:
    """Each packed model of the trial at `point`, as its members' configurations (one per member)."""
    configs = spec.trial_configs(point)
    return [[configs[j] for j in group for _ in range(spec.seeds)] for group in pack_groups(configs)]


def _same_shape(members: list[TrainConfig]) -> TrainConfig:
    """One configuration whose pack computes what the mixed pack computes: with the second-derivative
    stream if any member needs it."""
    return next((c for c in members if c.needs_u2), members[0])


def _trainer(members: list[TrainConfig], device: torch.device, graphed: bool) -> tuple[PackedTrainer, Callable[[], None]]:
    """A pack of `members` (a configuration per member) and its step synchronised on CUDA, for `paired`,
    which times single steps (`time_steps` synchronises once per batch of steps: give it `train_step`).

    Its passes are fused where the trial's would be (its epochs decide); the epochs are then made
    endless, so that no timing runs past a short spec's last step."""
    fuse = members[0].epochs >= MIN_EPOCHS_TO_FUSE
    endless = [dataclasses.replace(c, epochs=10**9) for c in members]
    trainer = PackedTrainer(endless, list(range(len(members))), device=device, graphed=graphed, fuse=fuse)

    def step() -> None:
        trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return trainer, step


def measure(spec: SweepSpec, point: dict, device: torch.device, seconds: float, peaks: dict[str, float], say) -> list[dict]:
    """A row per pack of the trial at `point` (and per graphed or eager on CUDA); `peaks`: the matmul rate by dtype."""
    rows = []
    for members in trial_packs(spec, point):
        flops = sum(flops_per_trial_step(c) for c in members) / len(members)  # a trial-step's, averaged over the members
        K, shared = len(members), _same_shape(members)
        for graphed in [True, False] if device.type == "cuda" else [False]:
            label = f"{spec.name}: {K} members{' graphed' if graphed else ''}"
            say(label)
            trainer, step = _trainer(members, device, graphed)
            rate = K * time_steps(trainer.train_step, device, seconds, warmup=WARMUP)
            say(f"{label}, in pairs with {K} of one configuration")
            _, one_config = _trainer([shared] * K, device, graphed)
            for _ in range(WARMUP):  # its buffers made and, graphed, its CUDA graph captured: `paired` times it first
                one_config()
            one_s, mixed_s, ratio = autotune.paired(one_config, step)
            rows.append({
                "spec": spec.name,
                "point": point,
                "K": K,
                "configurations": len({c.config_hash() for c in members}),
                "fourier": sorted({c.fourier for c in members}, key=lambda f: (f is not None, f or 0)),
                "epsilon": sorted({c.epsilon for c in members}),
                "graphed": graphed,
                "step_mode": trainer.step_mode,
                "dtype": shared.dtype,
                "trial_steps_per_s": rate,
                "gflops": rate * flops / 1e9,
                "of_peak": rate * flops / 1e9 / peaks[shared.dtype],
                "paired_seconds_a_step": {"mixed": mixed_s, "one_config": one_s},
                "mixed_time_over_one_config": ratio,
            })
            del trainer, step, one_config
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seconds", type=float, default=1.0, help="each pack timed for at least this long")
    parser.add_argument("--spec", action="append", type=Path, help="a sweep spec with `pack` (repeatable; default: the robustness specs)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()
    say = functools.partial(print, file=sys.stderr, flush=True)
    paths = args.spec or SPECS
    specs = [load_spec(path) for path in paths]
    for path, spec in zip(paths, specs):
        if spec.search.sampler != "grid" or not spec.pack:
            parser.error(f"{path}: needs a grid search with `pack` (what a trial's packs are)")
    points = [spec.grid_points(list(spec.searched))[0] for spec in specs]  # each spec's first trial
    peaks = {}  # dtype -> GFLOP/s, measured before any pack
    for dtype in sorted({spec.trial_config(point).dtype for spec, point in zip(specs, points)}):
        say(f"matmul peak ({dtype})")
        peaks[dtype] = matmul_peak_gflops(device, getattr(torch, dtype), args.seconds)
    rows = [row for spec, point in zip(specs, points) for row in measure(spec, point, device, args.seconds, peaks, say)]
    out = {
        "seconds": args.seconds,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({autotune.cpu_name()})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peaks,
        "results": rows,
    }
    print(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
