"""How long the check of a sweep's tables takes (what every --resume, and every sweep's end, runs).

    python benchmarks/reconcile.py [--trials 1000] [--seeds 16]

Lands N copies of one trained trial (real tables: replicates, curves, profiles, weights; each
under its own trial id and configuration hash) in a temporary folder, then times
`pipeline.reconcile.inspect` (read and check every committed file) and `repair` (the same, plus
the clean-up it finds nothing to do for). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from drm.config import TrainConfig
from drm.measurement import measure
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.reconcile import inspect, repair
from pipeline.rows import trial_tables
from pipeline.tables import TrialTables, write_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    config = TrainConfig(problem="double_well", fourier=2, width=128, epochs=10).resolve()
    trainer = PackedTrainer(config, list(range(args.seeds)))
    trainer.run()
    tables = trial_tables(trainer, measure(trainer.model, config), sweep="bench", trial_id="t", wall_seconds=1.0, node="n")
    with tempfile.TemporaryDirectory() as folder:
        results = Storage(Path(folder) / "results")
        start = time.perf_counter()
        for i in range(args.trials):
            rows = tables.replicates
            rows = rows.set_column(rows.schema.get_field_index("trial_id"), "trial_id", pa.array([f"t{i}"] * rows.num_rows))
            rows = rows.set_column(rows.schema.get_field_index("config_hash"), "config_hash", pa.array([f"h{i}"] * rows.num_rows))
            write_trial(results, TrialTables(f"t{i}", rows, tables.curves, tables.profiles, tables.weights))
        landed = time.perf_counter() - start
        start = time.perf_counter()
        found = inspect(results, args.seeds)
        inspected = time.perf_counter() - start
        start = time.perf_counter()
        repair(results, args.seeds, by="bench")
        repaired = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    assert len(found.trials) == args.trials and not found.invalid
    print(json.dumps({
        "trials": args.trials, "seeds": args.seeds, "bytes_per_trial": size // args.trials,
        "land_seconds": round(landed, 2), "inspect_seconds": round(inspected, 2), "repair_seconds": round(repaired, 2),
        "inspect_trials_per_s": round(args.trials / inspected, 1),
    }))


if __name__ == "__main__":
    main()
