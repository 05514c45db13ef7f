"""One trial's path, the same for `drmfm train` and for a sweep's trial: a pack of configurations × seeds
is trained, measured once, and each configuration lands as its own trial's tables.

`TrialRun` holds a trained pack with the trial id of each of its configurations; the caller says when to
stop (the end, or a sweep's checkpoint) and where the tables land (the recorder here, or its Ray actor).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from drm.autotune import TuningCache
from drm.config import TrainConfig
from drm.measurement import Measurements, measure
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.rows import trial_tables
from pipeline.tables import TrialTables


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrialRun:
    """A pack in training: configuration i of `trainer.pack.slices()` lands as trial `labels[i]`,
    with MLflow runs `runs[labels[i]]` (None when nothing is tracked)."""

    trainer: PackedTrainer
    sweep: str
    labels: list[str]
    node: str
    runs: dict[str, Any]
    seconds: float = 0.0  # training time so far, a resumed checkpoint's included
    figures: str = "trial"  # the MLflow profile figures: one per configuration, one per seed, or none

    @property
    def done(self) -> bool:
        return self.trainer.step >= self.trainer.config.epochs

    def train(self, steps: int | None = None, progress: Callable[[int, int], None] | None = None) -> float:
        """Up to `steps` more steps (default: to the end); returns the seconds they took."""
        start = time.perf_counter()
        self.trainer.run(steps=steps, progress=progress)
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        return elapsed

    def measure(self, refine: bool = True) -> Measurements:
        """Every metric of every member (`refine` False: the energy on the measurement grid, with its error)."""
        return measure(self.trainer.model, self.trainer.pack, self.trainer.last_loss, refine, self.trainer.curves())

    def tables(self, m: Measurements, stopped: bool = False) -> list[TrialTables]:
        """Each configuration's tables (`stopped`: a scheduler may end the trial here, not at its last step)."""
        return [
            trial_tables(self.trainer, m, sweep=self.sweep, trial_id=label, wall_seconds=self.seconds, node=self.node,
                         mlflow_runs=self.runs[label], stopped=stopped, members=members, figures=self.figures)
            for label, (_, members) in zip(self.labels, self.trainer.pack.slices(), strict=True)
        ]

    def land(self, land: Callable[[TrialTables, Any], None]) -> tuple[Measurements, list[TrialTables]]:
        """Measure once, and land every configuration's tables with `land(tables, its runs)`."""
        m = self.measure()
        landed = self.tables(m)
        for t in landed:
            land(t, self.runs[t.trial_id])
        return m, landed


def run_trial(
    config: TrainConfig,
    seeds: list[int],
    *,
    device: str,
    sweep: str,
    trial_id: str,
    results_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] | None = None,
    tracking_uri: str | None = None,
    experiment: str = "train",
    references: Path | None = None,
    tuning: Path | None = None,
) -> pa.Table:
    """Train, measure and land one trial (`drmfm train`); returns its replicate rows (one per seed).

    With `tracking_uri`, the trial is also recorded in MLflow, in `experiment` (which must exist).
    With `references` (the home's cache of classical references), the judged columns are filled.
    With `tuning` (the home's tuning.json), a CPU's member chunks are read from it or measured into it.
    `progress(step, total)` is called as training starts and about every second; `say`, before, with
    what takes time until the first step (a compile, the tuning: `PackedTrainer`; opening the runs).
    """
    from pipeline.recorder import Recorder

    config = config.resolve()
    # On CUDA a step is replayed from a CUDA graph (a small network's step is launch-bound).
    trainer = PackedTrainer(config, seeds, resolve_device(device), tuning=None if tuning is None else TuningCache(tuning), say=say)
    recorder = Recorder(Storage(results_dir), tracking_uri, experiment, sweep, references=None if references is None else str(references))
    if say is not None and tracking_uri is not None:
        say("opening the MLflow runs")
    runs = recorder.open_runs(trial_id, config.as_dict(), config.config_hash(), seeds)
    run = TrialRun(trainer, sweep, [trial_id], socket.gethostname(), {trial_id: runs})
    run.train(progress=progress)
    _, (tables,) = run.land(recorder.land)
    return recorder.results.read_table("replicates", f"{tables.trial_id}.parquet")  # as landed: judged by the recorder
