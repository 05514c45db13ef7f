"""What tuning a packed CPU step costs: the seconds to build a trainer that times its chunks, passes
and threads (`tuning="measure"`, drm.autotune), against one that takes the 12 MiB rule, for each
packed row of `drmfm bench`, and what the timing chose (in brackets, each proposal timed in pairs
against its default: its time over the default's, and whether it was kept).

    python benchmarks/tuning_cost.py [--threads 2]

Each shape is compiled once before it is timed (inductor's cache then serves the tuned build), so
the figure is the timing's alone. CPU only. BENCHMARKS.md records what it printed.
"""

from __future__ import annotations

import argparse
import time

import torch

from drm._allocator import keep_freed_memory
from drm.config import TrainConfig
from drm.train import PackedTrainer
from pipeline.bench import CASES

ROWS = [("1d", 1), ("1d", 8), ("1d", 64), ("2d", 1), ("2d", 8), ("2d", 64)]  # the bench's packed CPU rows


def seconds_to_build(config: TrainConfig, K: int, tuning: str | None) -> tuple[float, PackedTrainer]:
    start = time.perf_counter()
    trainer = PackedTrainer(config, list(range(K)), device=torch.device("cpu"), tuning=tuning, fuse=True)
    return time.perf_counter() - start, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"{'row':<10} {'tuned build':>12} {'rule build':>11}  chosen")
    for case, K in ROWS:
        config = TrainConfig(**{**CASES[case].as_dict(), "dtype": "float32"}).resolve()
        seconds_to_build(config, K, None)[1].train_step()  # compiled here, not in the timing below
        tuned, trainer = seconds_to_build(config, K, "measure")
        rule, _ = seconds_to_build(config, K, None)
        pairs = "; ".join(f"{what} {p['proposed']} over {p['default']}: {p['ratio']:.3f}, {'kept' if p['kept'] else 'not kept'}"
                          for what, p in trainer.tuning.paired.items())
        print(f"{case} K = {K:<3} {tuned:>10.1f} s {rule:>9.2f} s  {trainer.tuning.describe()}; {trainer.passes} [{pairs}]", flush=True)


if __name__ == "__main__":
    main()
