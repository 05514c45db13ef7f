"""TF32 matmuls on or off: what they change in u_yy, energies and transition counts.

Trains a fixed set of runs twice on one device, with `torch.backends.cuda.matmul.allow_tf32`
off and on (everything else equal: same seeds, same points), and reports per run the relative
energy difference, whether the transition counts agree, and the largest difference of u_yy
(u_xx in 1D) on the counting line. TF32 may become the default only if every energy stays within
1% and no transition count changes. On a CPU the flag does nothing, and both arms must agree
exactly: that is the check this script makes of itself there.

    python benchmarks/precision.py --device cuda [--epochs 3000] [--seeds 8] > precision.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from drm.config import TrainConfig
from drm.measurement import measure
from drm.train import PackedTrainer

RUNS = {  # the fixed set: the bench's two cases and a 1D run with ε (u_xx in the energy)
    "1d P1 i=2": dict(problem="double_well", fourier=2),
    "1d P2 i=1 tanh eps=0.01": dict(problem="double_well_u2", fourier=1, activation="tanh", epsilon=0.01),
    "2d P4 i=2 eps=0.1/16": dict(problem="twin_branching", fourier=2, epsilon=0.1 / 16),
}


def second_derivative_on_line(trainer: PackedTrainer) -> np.ndarray:
    """u_2 (u_xx in 1D; u_yy along x = 0.5 in 2D) of every member on 2,049 points: (K, n)."""
    p = next(trainer.model.parameters())
    t = torch.linspace(0, 1, 2049, dtype=p.dtype, device=p.device)
    points = t[:, None] if trainer.problem.dim == 1 else torch.stack([torch.full_like(t, 0.5), t], dim=1)
    with torch.no_grad():
        jet = trainer.model.jet(points.expand(trainer.model.K, -1, -1), None, trainer.problem.oscillation_axis)
    return jet.u_2.cpu().numpy()


def arm(config: TrainConfig, seeds: list[int], device: str, tf32: bool) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    trainer = PackedTrainer(config, seeds, device)
    start = time.perf_counter()
    trainer.run()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    seconds = time.perf_counter() - start
    m = measure(trainer.model, config)
    return {"seconds": seconds, "energy": m.energy, "transitions": m.transitions, "u_2": second_derivative_on_line(trainer)}


def compare(device: str, epochs: int, seeds: int, width: int = 128) -> dict:
    out = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__,
           "epochs": epochs, "seeds": seeds, "runs": []}
    for name, fields in RUNS.items():
        config = TrainConfig(**fields, epochs=epochs, width=width).resolve()
        off = arm(config, list(range(seeds)), device, tf32=False)
        on = arm(config, list(range(seeds)), device, tf32=True)
        rel = np.abs(on["energy"] - off["energy"]) / np.maximum(np.abs(off["energy"]), 1e-12)
        scale = np.maximum(np.abs(off["u_2"]).max(axis=1), 1e-12)
        out["runs"].append({
            "run": name,
            "energy_rel_diff_max": float(rel.max()),
            "energy_rel_diff_median": float(np.median(rel)),
            "transitions_changed": int((on["transitions"] != off["transitions"]).sum()),
            "u2_max_abs_diff_rel": float((np.abs(on["u_2"] - off["u_2"]).max(axis=1) / scale).max()),
            "seconds_off": off["seconds"],
            "seconds_on": on["seconds"],
        })
    runs = out["runs"]
    out["tf32_default_allowed"] = all(r["energy_rel_diff_max"] <= 0.01 and r["transitions_changed"] == 0 for r in runs)
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    print(json.dumps(compare(args.device, args.epochs, args.seeds, args.width), indent=1))


if __name__ == "__main__":
    main()
