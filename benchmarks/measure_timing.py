"""What measuring a trained pack costs, with the energy's error estimate and refinement (issue 13) and
without (the measurement grid alone, as before): the bench's two configurations, K members, one thread.

    python benchmarks/measure_timing.py --members 16 --steps 2000

The pack is trained `steps` steps first (an untrained net is smoother than a trained one), then
`measure` is timed with refinement, without it (the coarse grid of the estimate only), and the bare
measurement-grid energy that version 0.1 computed.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from drm.config import TrainConfig
from drm.measurement import measure, quadrature_energy
from drm.train import PackedTrainer
from pipeline.bench import CASES


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    for name, case in CASES.items():
        config = TrainConfig(**{**case.as_dict(), "epochs": args.steps}).resolve()
        trainer = PackedTrainer(config, list(range(args.members)))
        trainer.run()
        model, pack = trainer.model, trainer.pack
        m = measure(model, pack)
        refined = _time(lambda: measure(model, pack))
        unrefined = _time(lambda: measure(model, pack, refine=False))

        def bare() -> None:
            from drm.measurement import evaluate

            quadrature_energy(pack.problem, pack.epsilon("cpu"), lambda p: evaluate(model, p, pack.second_axis), torch.float32)

        out[name] = {"members": args.members, "steps": args.steps, "energy_grid": int(m.energy_grid[0]),
                     "max_relative_error": float((m.energy_quadrature_error / abs(m.energy)).max()),
                     "measure_refined_s": round(refined, 2), "measure_unrefined_s": round(unrefined, 2),
                     "grid_energy_alone_s": round(_time(bare), 2)}
        print(name, out[name], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
