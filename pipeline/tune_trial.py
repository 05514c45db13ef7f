"""One sweep trial inside Ray Tune: a configuration's seeds trained as one packed model.

The trial reads its checkpoint, if Tune restarted it, and trains to the next checkpoint. There it
measures and reports the objective (aggregated over seeds), and saves its state. At the end it
hands its tables and results to the sweep's recorder, which lands them where the driver says. A trial killed at any point
restarts from its last checkpoint and ends where an uninterrupted run ends.
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drm.config import TrainConfig, pack_key
from drm.measure import Measurements, measure
from drm.train import PackedTrainer
from pipeline.spec import METRICS, SweepSpec
from pipeline.trial import trial_tables

_SLICE_STEPS = 500  # steps between looks at the clock
_CHECKPOINT_SECONDS = 30.0  # default time between checkpoints
_AGG = {"median": np.median, "mean": np.mean, "min": np.min, "max": np.max}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (sent once to the workers with tune.with_parameters)."""

    spec: SweepSpec
    recorder: Any  # the sweep's Recorder actor, on the driver's node
    tracking: bool  # whether MLflow records the sweep (figures are drawn only then)


def objective_metrics(done: list[tuple[Measurements, PackedTrainer]], agg: str) -> dict[str, float]:
    """Every result metric aggregated over the seeds that did not diverge (NaN when none is left)."""
    ok = np.concatenate([[s == "ok" for s in trainer.status()] for _, trainer in done])
    columns: dict[str, list] = {name: [] for name in METRICS}
    for m, trainer in done:
        per_member = {
            "energy": m.energy, "transitions": m.transitions, "bands": m.bands, "transitions_wall": m.transitions_wall,
            "transitions_per_period": m.transitions_per_period, "boundary_l2": m.boundary_l2,
            "loss_final": trainer.last_loss.detach().cpu().numpy(),
        }
        for name in METRICS:
            values = per_member[name]
            columns[name].append(np.full(trainer.model.K, np.nan) if values is None else np.asarray(values, dtype=float))
    out = {}
    for name in METRICS:
        values = np.concatenate(columns[name])[ok]
        values = values[np.isfinite(values)]
        out[name] = float(_AGG[agg](values)) if values.size else float("nan")
    out.update(step=done[-1][1].step, n_ok=int(ok.sum()), diverged=int((~ok).sum()))
    return out


def pack_groups(configs: list[TrainConfig]) -> list[list[int]]:
    """Indices of the configurations that train as one packed model, groups in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for j, c in enumerate(configs):
        groups.setdefault(pack_key(c), []).append(j)
    return list(groups.values())


def trial_labels(spec: SweepSpec, trial_id: str, n: int) -> list[str]:
    """The trial ids the configurations of one Tune trial land under: its own, or `<trial>-<j>` when packed."""
    return [f"{trial_id}-{j}" for j in range(n)] if spec.pack else [trial_id]


def run_tune_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """The Ray Tune function trainable (module-level, so that it pickles)."""
    import ray
    from ray import tune

    spec = ctx.spec
    configs = spec.trial_configs({k: params[k] for k in spec.searched})
    labels = trial_labels(spec, tune.get_context().get_trial_id(), len(configs))
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    seeds = list(range(spec.seeds))
    groups = pack_groups(configs)
    # Member order in a pack: configuration by configuration, each with all its seeds.
    trainers = [PackedTrainer([configs[j] for j in group for _ in seeds], seeds * len(group), device) for group in groups]
    trained_seconds = [0.0] * len(groups)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", map_location=trainers[0].device)
        for trainer, saved in zip(trainers, state["trainers"]):
            trainer.load_state_dict(saved)
        trained_seconds = list(state["trained_seconds"])
    node = ray.get_runtime_context().get_node_id() or socket.gethostname()
    runs = {
        label: ray.get(ctx.recorder.open_runs.remote(label, c.as_dict(), c.config_hash(), seeds)) if ctx.tracking else None
        for label, c in zip(labels, configs)
    }
    packs = Packs(spec, groups, labels, trainers, trained_seconds)
    try:
        _train_and_land(packs, node, ctx.recorder, runs)
    except Exception:
        # Tune may retry it: the retry finds these runs by their tags and reopens them. The runs of
        # configurations that have landed stay as they are (FINISHED, beside their rows).
        ray.get([ctx.recorder.fail_runs.remote(r) for label, r in runs.items() if label not in packs.landed], timeout=60)
        raise


@dataclass
class Packs:
    """A trial's packed models: trainers[g] trains configurations groups[g] (landing as labels[j])."""

    spec: SweepSpec
    groups: list[list[int]]
    labels: list[str]
    trainers: list[PackedTrainer]
    trained_seconds: list[float]
    landed: set[str] = field(default_factory=set)

    def state(self) -> dict:
        return {"trainers": [t.state_dict() for t in self.trainers], "trained_seconds": list(self.trained_seconds)}

    def tables(self, g: int, m: Measurements, node: str, runs: dict, stopped: bool = False) -> list:
        """Each configuration of pack g as its own trial's tables."""
        S = self.spec.seeds
        return [
            trial_tables(self.trainers[g], m, sweep=self.spec.name, trial_id=self.labels[j], wall_seconds=self.trained_seconds[g],
                         node=node, mlflow_runs=runs[self.labels[j]], stopped=stopped, members=range(i * S, (i + 1) * S))
            for i, j in enumerate(self.groups[g])
        ]


def _train_and_land(packs: Packs, node: str, recorder, runs: dict) -> None:
    import ray
    from ray import tune

    spec = packs.spec
    # A checkpoint (with a report of the objective) every `checkpoint_every` steps when the spec
    # says so, else after every _CHECKPOINT_SECONDS of training: resuming is exact either way.
    every = spec.checkpoint_every or _SLICE_STEPS
    since_checkpoint = 0.0
    done = []
    for g, trainer in enumerate(packs.trainers):
        epochs = trainer.config.epochs
        while trainer.step < epochs:
            start = time.perf_counter()
            trainer.run(steps=every - trainer.step % every)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            elapsed = time.perf_counter() - start
            packs.trained_seconds[g] += elapsed
            since_checkpoint += elapsed
            if trainer.step >= epochs:
                break
            if spec.checkpoint_every is None and since_checkpoint < _CHECKPOINT_SECONDS:
                continue
            since_checkpoint = 0.0
            m = measure(trainer.model, trainer.configs)
            if spec.scheduler is not None:
                # The scheduler may end the trial after this report. Its state here is staged as
                # `stopped`; the driver promotes it to the tables only if the trial does end here.
                ray.get([recorder.stage.remote(t) for t in packs.tables(g, m, node, runs, stopped=True)])
            with tempfile.TemporaryDirectory() as folder:
                torch.save(packs.state(), Path(folder) / "state.pt")
                tune.report(objective_metrics([*done, (m, trainer)], spec.objective.agg), checkpoint=tune.Checkpoint.from_directory(folder))
        m = measure(trainer.model, trainer.configs)
        for t in packs.tables(g, m, node, runs):
            ray.get(recorder.land.remote(t, runs[t.trial_id]))
            packs.landed.add(t.trial_id)
        done.append((m, trainer))
    tune.report({**objective_metrics(done, spec.objective.agg), "trained_seconds": sum(packs.trained_seconds)})
