"""What counting transitions at every learning-curve point costs training (issue 13: at most 5%).

    python benchmarks/curve_counts.py --members 16

For the bench's two configurations (pipeline/bench.py) with the paper's epochs: the seconds of one
training step and of one count (`PackedTrainer._count`, on the curve grid), measured in the same
run, and the overhead at the paper's logging interval (epochs / 200 steps between points), bands
(2D) included at their few points: (count / interval + bands · points / epochs) / step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from drm.config import TrainConfig
from drm.problems import get_problem
from drm.train import PackedTrainer
from pipeline.bench import CASES


def _seconds(fn, repeats: int) -> float:
    fn()  # warm
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200, help="steps timed per configuration")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name, case in CASES.items():
        epochs = get_problem(case.problem).default_epochs
        config = TrainConfig(**{**case.as_dict(), "epochs": epochs}).resolve()
        trainer = PackedTrainer(config, list(range(args.members)))
        step = _seconds(trainer._device_step, args.steps)
        count = _seconds(lambda: trainer._count().sum().item(), max(5, args.steps // 20))
        interval = trainer.log_every
        # Bands (2D) at about six points of the run, on the measurement grid's image.
        bands = _seconds(trainer._bands, 1) if trainer._curve_image is not None else 0.0
        band_points = len(range(0, epochs, interval * trainer._bands_every)) + 1 if bands else 0
        out[name] = {"members": args.members, "epochs": epochs, "interval": interval, "step_ms": round(1e3 * step, 3),
                     "count_ms": round(1e3 * count, 3), "bands_ms": round(1e3 * bands, 1), "band_points": band_points,
                     "overhead": round((count / interval + bands * band_points / epochs) / step, 5)}
        print(name, out[name], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
