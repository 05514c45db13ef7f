"""MLflow artifacts and bytes per trial under each `figures:` setting (trial, seed, none).

    python benchmarks/artifacts.py [--seeds 2 16] [--epochs 200]

Trains one small trial of the 1D problem (double_well) and of the 2D one (twin_branching) for
each number of seeds, lands it through the recorder into a SQLite store with local artifacts, once
per setting, and counts the files and bytes under the run's artifact folders. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from drm.config import TrainConfig
from drm.train import PackedTrainer
from pipeline.recorder import Recorder
from pipeline.spec import FIGURES
from pipeline.tracking import ensure_experiment
from pipeline.trial import TrialRun

CASES = {
    "1d": {"problem": "double_well", "depth": 3, "width": 64, "fourier": 2},
    "2d": {"problem": "twin_branching", "depth": 3, "width": 64, "fourier": 2, "epsilon": 0.1 / 16, "activation": "tanh"},
}


def artifacts(case: str, seeds: int, figures: str, epochs: int) -> dict:
    config = TrainConfig(**CASES[case], epochs=epochs).resolve()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        ensure_experiment(uri, "bench", root / "mlartifacts")
        recorder = Recorder(root / "results", uri, "bench", "bench")
        members = list(range(seeds))
        runs = recorder.open_runs("t", config.as_dict(), config.config_hash(), members)
        run = TrialRun(PackedTrainer(config, members, torch.device("cpu")), "bench", ["t"], "bench", {"t": runs}, figures=figures)
        run.train()
        run.land(recorder.land)
        files = [p for p in (root / "mlartifacts").rglob("*") if p.is_file()]
        return {"case": case, "seeds": seeds, "figures": figures, "artifacts": len(files), "bytes": sum(p.stat().st_size for p in files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [artifacts(case, k, figures, args.epochs) for case in CASES for k in args.seeds for figures in FIGURES]
    print(json.dumps({"torch": torch.__version__, "epochs": args.epochs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
