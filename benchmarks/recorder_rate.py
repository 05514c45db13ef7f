"""How fast the recorder lands trials against a local `mlflow server` on loopback (issue 16):
trials and MLflow runs per second, for trials of K seeds as a sweep's tiny trials make them.

One tiny trial is trained once; its tables are landed N times under new trial ids and configuration
hashes, each as a sweep trial does it (open its runs, then land its tables and finish its runs),
from `--threads` threads at once (a sweep's trial slots), through the same Recorder a sweep uses.

    .venv/bin/python benchmarks/recorder_rate.py [--trials N] [--seeds K] [--threads T] [--json FILE]
        [--store mlflow.db --experiment NAME]

With --store, the server runs on a copy of that SQLite store (a big sweep's, e.g. the N = 10,000
run's) and the trials land in its experiment NAME as more configurations of that sweep: what a
recorder pays when the store already holds thousands of them. `first_open_seconds` is the first
trial's open (the tracker's start, which reads the sweep's runs once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import mlflow_server  # noqa: E402
from drm.config import TrainConfig  # noqa: E402
from drm.measurement import measure  # noqa: E402
from drm.train import PackedTrainer  # noqa: E402
from pipeline.recorder import Recorder  # noqa: E402
from pipeline.rows import trial_tables  # noqa: E402
from pipeline.tracking import ensure_experiment, quiet_mlflow  # noqa: E402


def tiny_tables(seeds: int):
    config = TrainConfig(problem="double_well", width=16, depth=2, epochs=20, batch=64, fourier=2).resolve()
    trainer = PackedTrainer(config, seeds=list(range(seeds)))
    trainer.run()
    return config, trial_tables(trainer, measure(trainer.model, config), sweep="rate", trial_id="t", wall_seconds=0.1, node="n",
                                mlflow_runs=("p", {s: f"c{s}" for s in range(seeds)}))


def renamed(tables, i: int):
    """The same tables as trial i of another configuration."""
    rows = tables.replicates
    for column, value in (("trial_id", f"t{i}"), ("config_hash", f"rate{i:06d}")):
        rows = rows.set_column(rows.schema.get_field_index(column), column, pa.array([value] * rows.num_rows))
    names = pa.array([f"t{i}"] * tables.curves.num_rows, pa.string())
    curves = tables.curves.set_column(tables.curves.schema.get_field_index("trial_id"), "trial_id", names)
    return dataclasses.replace(tables, trial_id=f"t{i}", replicates=rows, curves=curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--store", type=Path, help="run the server on a copy of this SQLite store")
    parser.add_argument("--experiment", default="rate", help="the experiment (and sweep) the trials land in")
    args = parser.parse_args()
    quiet_mlflow()  # as `drmfm` runs
    work = Path(tempfile.mkdtemp(prefix="drmfm-rate-"))
    if args.store:
        shutil.copyfile(args.store, work / "mlflow.db")
    server, uri = mlflow_server(work)
    try:
        ensure_experiment(uri, args.experiment, None)
        config, tables = tiny_tables(args.seeds)
        recorder = Recorder(work / "results", uri, args.experiment, args.experiment)
        seeds = list(range(args.seeds))

        def one(i: int) -> None:
            mine = renamed(tables, i)
            runs = recorder.open_runs(mine.trial_id, config.as_dict(), f"rate{i:06d}", seeds)
            assert recorder.land(mine, runs)

        started = time.perf_counter()
        one(-1)  # the tracker's client and the server warm
        first_open = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(one, range(args.trials)))
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(60)
    assert recorder.tracking_failure() is None, recorder.tracking_failure()
    found = {"trials": args.trials, "seeds": args.seeds, "threads": args.threads, "seconds": seconds, "first_open_seconds": first_open,
             "store": str(args.store) if args.store else None,
             "trials_per_second": args.trials / seconds, "runs_per_second": args.trials * (1 + args.seeds) / seconds}
    print(json.dumps(found, indent=1))
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
