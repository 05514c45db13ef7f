"""`drmfm bench`: training throughput of the reference and the packed trainer, and the device's limit.

Two fixed configurations (INTERFACE.md): 1D double_well, depth 3, width 128, fourier 2, batch 128;
2D twin_branching, depth 3, width 128, fourier 2, ε = 0.1/16, 600 + 400 points. For each: the
reference (one model, autograd with create_graph=True, torch Adam) and the packed trainer with K
seeds, in trial-steps per second. FLOPs are counted from the configuration, the same count for
every method (the matrix products one step needs: forward streams, weight and input gradients), so
a method that does more work never scores higher; the dense-matmul peak is measured in the same
run with the same threads, so each figure is also a fraction of the machine's own limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from drm._allocator import keep_freed_memory
from drm.autotune import cpu_name
from drm.config import TrainConfig
from drm.network import layer_sizes
from drm.problems import get_problem
from drm.reference import ReferenceTrainer
from drm.train import PackedTrainer

CASES = {
    "1d": TrainConfig(problem="double_well", depth=3, width=128, fourier=2, batch=128, epochs=10**9),
    "2d": TrainConfig(problem="twin_branching", depth=3, width=128, fourier=2, epsilon=0.1 / 16, epochs=10**9),
}


def flops_per_trial_step(config: TrainConfig) -> float:
    """Matrix-product FLOPs of one step of one trial, from the configuration alone.

    Rows through the network: value rows (N + Nb), d first-derivative streams of N rows, and one
    second-derivative stream of N rows when ε > 0. Per layer of size (in, out): forward 2·rows·in·out,
    weight gradient 2·rows·in·out, input gradient 2·rows·in·out (not for the first layer).
    """
    c = config.resolve()
    problem = get_problem(c.problem)
    from drm.features import FourierMap

    features = FourierMap(problem.dim, c.fourier, c.fourier_map).out_features
    sizes = layer_sizes(features, c.depth, c.width)
    rows = c.batch + c.boundary_batch + problem.dim * c.batch + (c.batch if c.needs_u2 else 0)
    macs = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return 2.0 * rows * (2 * sum(macs) + sum(macs[1:]))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, min_seconds: float, warmup: int = 5) -> float:
    """Steps per second of `step`, timed over at least `min_seconds` after `warmup` steps."""
    for _ in range(warmup):
        step()
    _sync(device)
    n, start = 0, time.perf_counter()
    batch = 1
    while True:
        for _ in range(batch):
            step()
        n += batch
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed
        batch = min(2 * batch, 1000)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, min_seconds: float) -> float:
    """Dense square matmul throughput (the machine's practical limit for this dtype and thread count)."""
    n = 4096 if device.type == "cuda" else 1536
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    rate = time_steps(lambda: torch.mm(a, b, out=out), device, min_seconds, warmup=3)
    return rate * 2.0 * n**3 / 1e9


_MATMUL_OPS = frozenset({"aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm", "aten::addbmm"})
# A torch.compile'd graph (drm._fused): elementwise passes with no aten operator inside; on CUDA inductor
# records each Triton launch as its own event, which holds the kernel's device time.
_COMPILED = ("## Call CompiledFxGraph", "triton_")
_SPAN = "drmfm.bench.steps"


def step_shares(step: Callable[[], None], device: torch.device, steps: int = 5) -> tuple[float | None, float | None]:
    """Shares of a step's time spent in matrix products and in every other operator (the elementwise
    passes, compiled or eager, Adam, sampling, copies and reductions), from the profiler's self times
    over `steps` steps against the span the profiler gave those steps (one clock). The rest is Python,
    dispatch and the profiler's own cost: profiling lengthens a step of many small operators (a 1D
    K = 1 step of 1.75 ms took 2.3 to 3.3 ms profiled), so there the rest is overstated.

    On a CPU only the step's own thread is counted (a CPU backward runs on the caller's thread); on
    CUDA, the operators' device times, from whichever thread launched them, a compiled graph's Triton
    kernels included (their launches are recorded as events of their own). Where the shares add up to
    more than the span, no share can be read as one: (None, None), printed "-"."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step()
    _sync(device)
    with profile(activities=activities) as prof:
        with record_function(_SPAN):
            for _ in range(steps):
                step()
            _sync(device)
    events = prof.events()
    span = next(e for e in events if e.name == _SPAN)
    matmul = other = 0.0
    for event in events:
        if device.type == "cuda":
            spent = event.self_device_time_total
        elif event.thread == span.thread:
            spent = event.self_cpu_time_total
        else:
            continue
        if event.name in _MATMUL_OPS:
            matmul += spent
        elif event.name.startswith(("aten::", *_COMPILED)):
            other += spent
    wall = span.cpu_time_total
    if matmul + other > wall:
        return None, None
    return matmul / wall, other / wall


@dataclass(frozen=True)
class BenchRow:
    case: str
    method: str
    graphed: bool
    K: int
    trial_steps_per_s: float
    gflops: float
    ratio_to_reference: float
    matmul_share: float | None = None  # of an eager step's time (step_shares); None for a graphed one or where unreadable
    elementwise_share: float | None = None
    tuning: dict | None = None  # the packed step's member chunks and how they were chosen (drm.autotune)
    passes: str | None = None  # the packed step's elementwise passes: fused (torch.compile) or eager, and why (drm._fused)


def run_bench(
    device: torch.device,
    dtype: str = "float32",
    ks: tuple[int, ...] | None = None,
    min_seconds: float = 2.0,
    cases: tuple[str, ...] = ("1d", "2d"),
    progress: Callable[[str], None] | None = None,
    fuse: bool = True,
    tune: bool = True,
) -> dict:
    """Measure every (case, method, K); returns the JSON object of INTERFACE.md.

    `fuse` False keeps the eager elementwise passes, `tune` False the fixed rule's member chunks:
    the same script then shows what each gains."""
    torch_dtype = getattr(torch, dtype)
    if ks is None:
        ks = (1, 8, 64, 256) if device.type == "cuda" else (1, 8, 64)
    say = progress or (lambda _msg: None)
    if device.type == "cpu":
        keep_freed_memory()  # before anything is timed: the reference runs with the same allocator
    say("matmul peak")
    peak = matmul_peak_gflops(device, torch_dtype, min_seconds)
    rows: list[BenchRow] = []
    for case in cases:
        config = TrainConfig(**{**CASES[case].as_dict(), "dtype": dtype}).resolve()
        flops = flops_per_trial_step(config)
        say(f"{case}: reference")
        ref = ReferenceTrainer(config, seed=0, device=device)
        ref_rate = time_steps(ref.train_step, device, min_seconds)
        rows.append(BenchRow(case, "reference", False, 1, ref_rate, ref_rate * flops / 1e9, 1.0, *step_shares(ref.train_step, device)))
        variants = [False, True] if device.type == "cuda" else [False]
        for k in ks:
            for graphed in variants:
                say(f"{case}: packed K={k}{' graphed' if graphed else ''}")
                trainer = PackedTrainer(config, list(range(k)), device=device, graphed=graphed, tuning="measure" if tune else None, fuse=fuse,
                                        say=lambda what: say(f"{case}: packed K={k}: {what}"))
                rate = k * time_steps(trainer.train_step, device, min_seconds)
                shares = (None, None) if graphed else step_shares(trainer.train_step, device)
                rows.append(BenchRow(case, "packed", graphed, k, rate, rate * flops / 1e9, rate / ref_rate, *shares, trainer.tuning.as_dict(),
                                     trainer.passes))
                del trainer
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cpu_name()})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "matmul_peak_gflops": peak,
        "results": [row.__dict__ for row in rows],
    }
