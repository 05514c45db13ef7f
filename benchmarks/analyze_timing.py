"""How long `drmfm analyze` takes on a large study (without figures, which depend on the folder's curves).

    python benchmarks/analyze_timing.py [--trials 3000] [--seeds 16]

Writes a synthetic results folder of N trials × S seeds (replicates only, one Parquet file per
trial, through `drm.storage.Storage`): P1 over depth × i × lr × epochs, counts on the periodic
map's lattice (m teeth per period, 2^(i-1) periods), then times `analysis.data.load`, `summarise`
and `effects` (the count regressions, the permutation tests on the lattice, the trend tests).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from analysis.data import load
from analysis.effects import effects
from analysis.summary import summarise
from drm.storage import Storage
from pipeline.tables import replicates_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    grid = itertools.product((3, 5, 7, 9, 11), (None, 1, 2, 3, 4), (1e-4, 3e-4, 1e-3, 3e-3), (10_000, 20_000, 50_000, 100_000, 200_000))
    grid = itertools.islice(itertools.cycle(list(grid)), args.trials)
    with tempfile.TemporaryDirectory() as folder:
        results = Storage(Path(folder) / "results")
        for k, (depth, i, lr, epochs) in enumerate(grid):
            m = 1 + rng.poisson(2.0, args.seeds)
            t = m * (1 if i is None else 2 ** (i - 1))
            rows = [{"sweep": "bench", "trial_id": f"t{k}", "seed": s, "problem": "double_well", "dim": 1, "depth": depth,
                     "width": 128, "activation": "relu", "rho": 0.1, "fourier": i, "fourier_map": "sincos", "epsilon": 0.0,
                     "penalty": 500.0, "lr": lr, "epochs": epochs + k // 500, "batch": 128, "boundary_batch": 2, "dtype": "float32",
                     "energy": float(rng.uniform(0.001, 0.01)), "transitions": int(t[s]),
                     "transitions_per_period": None if i is None else float(m[s]), "status": "ok", "config_hash": f"h{k}"}
                    for s in range(args.seeds)]
            results.write_table(pa.Table.from_pylist(rows, schema=replicates_schema()), "replicates", f"t{k}.parquet")
        timings = {}
        start = time.perf_counter()
        loaded = load([results.location])
        timings["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        summary = summarise(loaded.rows)
        timings["summarise_s"] = time.perf_counter() - start
        start = time.perf_counter()
        fitted = effects(loaded.ok)
        timings["effects_s"] = time.perf_counter() - start
    print(json.dumps({"trials": args.trials, "seeds": args.seeds, "rows": len(loaded.rows), "configurations": len(summary),
                      "effect_rows": len(fitted), **{k: round(v, 2) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
