"""Fingerprints of fixed-seed trainings and their measurements, to show that a refactor changed no bit.

    python benchmarks/fingerprint.py before.json      # on the old commit
    python benchmarks/fingerprint.py after.json       # on the new one
    python benchmarks/fingerprint.py after.json --against before.json

Each case trains a small pack for a few dozen steps (1D and 2D, with and without the map, ε = 0 and
ε > 0, float64 and float32, a mixed pack) and hashes its final weights, last losses, every measured
column and the profiles. Equal hashes: equal bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
import torch

from drm.config import TrainConfig
from drm.measurement import measure
from drm.train import PackedTrainer

COLUMNS = ("energy", "boundary_l2", "transitions", "transitions_per_period", "transitions_wall", "bands")
CASES = {
    "p1_none": [TrainConfig(problem="double_well", width=16, epochs=60, dtype="float64")],
    "p1_map": [TrainConfig(problem="double_well", width=16, epochs=60, fourier=2, dtype="float64")],
    "p2_eps": [TrainConfig(problem="double_well_u2", width=16, epochs=60, epsilon=0.01, activation="tanh", dtype="float64")],
    "p2_eps_float32": [TrainConfig(problem="double_well_u2", width=16, epochs=60, epsilon=0.01, activation="tanh")],
    "p3_eps": [TrainConfig(problem="twin_branching", width=16, epochs=30, fourier=2, epsilon=0.1 / 16, batch=48, boundary_batch=40,
                           dtype="float64")],
    "p3": [TrainConfig(problem="twin_branching", width=16, epochs=30, batch=48, boundary_batch=40, dtype="float64")],
    "p1_eps_float32": [TrainConfig(problem="double_well", width=16, epochs=60, epsilon=0.05, activation="tanh", fourier=1)],
    "p4_float32": [TrainConfig(problem="twin_branching", width=16, epochs=30, fourier=3, epsilon=0.1 / 16, batch=48, boundary_batch=40)],
    "mixed": [TrainConfig(problem="double_well", width=16, epochs=60, fourier=f, epsilon=e, activation="tanh", dtype="float64")
              for f in (1, 2) for e in (0.0, 0.02)],
    # A mixed float32 pack: before, its ε was squared in float32 (one ulp from an unmixed run's ε²).
    "mixed_float32": [TrainConfig(problem="double_well", width=16, epochs=60, fourier=f, epsilon=e, activation="tanh")
                      for f in (1, 2) for e in (0.1, 0.2)],
}


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fingerprints() -> dict[str, dict[str, str]]:
    out = {}
    for name, configs in CASES.items():
        one = len(configs) == 1
        config, seeds = (configs[0], [0, 1]) if one else (configs, list(range(len(configs))))
        trainer = PackedTrainer(config, seeds)
        trainer.run()
        m = measure(trainer.model, config)
        out[name] = {"weights": digest(*trainer.model.parameters()), "loss": digest(trainer.last_loss),
                     **{c: digest(getattr(m, c)) for c in COLUMNS}, "profiles": digest(m.profile_u, m.profile_du)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write this commit's fingerprints (JSON)")
    parser.add_argument("--against", help="fingerprints of another commit to compare with")
    args = parser.parse_args()
    mine = fingerprints()
    with open(args.out, "w") as f:
        json.dump(mine, f, indent=1)
    if args.against is None:
        return 0
    with open(args.against) as f:
        theirs = json.load(f)
    differ = {case: [k for k in mine[case] if mine[case][k] != theirs.get(case, {}).get(k)] for case in mine}
    for case, keys in differ.items():
        print(f"{case:16s} {'identical' if not keys else 'DIFFERS in ' + ', '.join(keys)}")
    return 1 if any(differ.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
