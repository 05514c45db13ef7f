"""Where a packed CPU step of a bench configuration goes: each matrix product by layer role and shape,
as milliseconds a step and as a fraction of the matmul peak measured in the same run, then the
other operators by their profiler self time.

    python benchmarks/step_profile.py --case 1d --K 64 [--chunk 8] [--fuse | --no-fuse] [--threads 2]

Without --chunk and --fuse the step is tuned as `drmfm bench` tunes it (drm.autotune, measured
afresh). Each product is timed around its call (`torch.bmm` wrapped while the steps run: a CPU
runs it synchronously, so the clock brackets it), which the profiler's own per-shape figures do
not do reliably for the batched products here. CPU only. BENCHMARKS.md records what it printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from unittest import mock

import torch

from drm import autotune
from drm._allocator import keep_freed_memory
from drm.config import TrainConfig
from drm.train import PackedTrainer
from pipeline.bench import _COMPILED, _MATMUL_OPS, CASES, matmul_peak_gflops


def role(frame, a: torch.Tensor, b: torch.Tensor) -> str:
    """A product's part in the step, from its caller and shapes (drm.streams)."""
    layer = frame.f_locals.get("ctx") and type(frame.f_locals["ctx"]).__name__
    output = "Output" in (layer or "")
    if frame.f_code.co_name == "forward":
        return "output u = h w" if output else ("first layer z = h W" if a.shape[-1] < 16 else "hidden z = h W")
    if output:
        return "output dL/dW"
    if a.is_contiguous():  # dL/dh = (dL/dz) Wᵀ; dL/dW's first operand is hᵀ, a transposed view
        return "hidden dL/dh = g Wt"
    return "first layer dL/dW" if a.shape[1] < 16 else "hidden dL/dW = ht g"


def profile_step(trainer: PackedTrainer, steps: int) -> tuple[float, dict, object]:
    """Seconds a step; per (role, a member's operand shapes): [calls, seconds, FLOP] over
    `steps` steps; the profiler's record of `steps` more."""
    for _ in range(3):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    step_s = (time.perf_counter() - start) / steps
    products: dict[tuple[str, tuple, tuple], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    bmm = torch.bmm

    def timed(a: torch.Tensor, b: torch.Tensor, **kw) -> torch.Tensor:
        begin = time.perf_counter()
        out = bmm(a, b, **kw)
        seconds = time.perf_counter() - begin  # the product alone: naming it is not billed to it
        entry = products[(role(sys._getframe(1), a, b), tuple(a.shape[1:]), tuple(b.shape[1:]))]
        entry[0] += 1
        entry[1] += seconds
        entry[2] += 2.0 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return out

    with mock.patch.object(torch, "bmm", timed):
        for _ in range(steps):
            trainer.train_step()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    return step_s, dict(products), prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="1d")
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--chunk", type=int, help="members a chunk (default: measured)")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, help="compiled passes (default: as measured)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    cpu = torch.device("cpu")
    peak = matmul_peak_gflops(cpu, torch.float32, 1.0)
    config = TrainConfig(**{**CASES[args.case].as_dict(), "dtype": "float32"}).resolve()
    tuning = "measure" if args.chunk is None else autotune.Tuning(args.chunk, "given", threads=args.threads)
    trainer = PackedTrainer(config, list(range(args.K)), device=cpu, tuning=tuning, fuse=args.fuse is not False)
    if args.fuse is not None and args.chunk is None and (trainer.passes.startswith("fused")) != args.fuse:
        trainer = PackedTrainer(config, list(range(args.K)), device=cpu, tuning=trainer.tuning, fuse=args.fuse)
    step_s, products, prof = profile_step(trainer, args.steps)
    print(f"{args.case} K = {args.K}: {trainer.tuning.describe()}; {trainer.passes}")
    print(f"matmul peak {peak:.0f} GFLOP/s; a step {step_s * 1e3:.2f} ms")
    print(f"{'product':24} {'(T, in) x (in, out) a member':28} {'calls':>5} {'ms':>7} {'of step':>8} {'of peak':>8}")
    total = 0.0
    for (name, a, b), (calls, seconds, flop) in sorted(products.items(), key=lambda kv: -kv[1][1]):
        ms = seconds / args.steps * 1e3
        total += ms
        print(f"{name:24} {f'{a} x {b}':28} {calls / args.steps:5.0f} {ms:7.2f} {ms / 1e3 / step_s:8.1%} {flop / seconds / 1e9 / peak:8.0%}")
    print(f"{'products':53} {total:13.2f} {total / 1e3 / step_s:8.1%}")
    print("other operators (profiler self time, against the unprofiled step)")
    others = [e for e in prof.key_averages() if e.key not in _MATMUL_OPS and e.key.startswith(("aten::", *_COMPILED))]  # as the bench counts
    for event in sorted(others, key=lambda e: -e.self_cpu_time_total)[:10]:
        ms = event.self_cpu_time_total / args.steps / 1e3
        print(f"{event.key[:53]:53} {event.count / args.steps:5.0f} {ms:7.2f} {ms / 1e3 / step_s:8.1%}")


if __name__ == "__main__":
    main()
