"""One sweep trial inside Ray Tune: a configuration's seeds trained as one packed model.

The trial reports its id and configurations to the recorder's ledger, and skips every
configuration whose rows have landed already (under any trial id: a resumed driver may see Tune
create a finished configuration again). It reads its checkpoint, if Tune restarted it, and trains
to the next checkpoint. There it measures and reports the objective (aggregated over seeds), and
saves its state. At the end it hands its tables and results to the sweep's recorder, which lands
them where the driver says. A trial killed at any point restarts from its last checkpoint and ends
where an uninterrupted run ends.
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

from drm.autotune import TuningCache
from drm.config import TrainConfig, pack_key
from drm.measurement import Measurements
from drm.train import PackedTrainer
from pipeline.spec import SweepSpec
from pipeline.trial import TrialRun

_SLICE_STEPS = 500  # steps between looks at the clock
_CHECKPOINT_SECONDS = 30.0  # default time between checkpoints
_AGG = {"median": np.median, "mean": np.mean, "min": np.min, "max": np.max}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (sent once to the workers with tune.with_parameters)."""

    spec: SweepSpec
    recorder: Any  # the sweep's Recorder actor, on the driver's node
    tracking: bool  # whether MLflow records the sweep (figures are drawn only then)
    tuning: str | None = None  # the home's tuning.json: a CPU's member chunks as measured on this kind of node


def _measured_columns(m: Measurements, trainer: PackedTrainer) -> list[dict[str, float]]:
    """One dict per member: its status and every metric (NaN where not measured)."""
    statuses = trainer.status()
    return [
        {"status": statuses[k], **{name: np.nan if values is None else float(values[k]) for name, values in m.values.items()}}
        for k in range(trainer.model.K)
    ]


def objective_metrics(seeds: list[dict[str, Any]], agg: str, step: int, names: tuple[str, ...]) -> dict[str, float]:
    """The objective's metrics (`names`) aggregated over the seeds that did not diverge (NaN when none
    is left), with the step and the seeds' tally: what Tune is told. Not every metric: Tune keeps every
    reported key's history and statistics per trial in its experiment state, rewritten as it grows
    (21 kB a trial with every metric); the tables and MLflow hold the rest.

    `seeds`: one dict per seed (a measured member, or a landed row), with its status and metrics.
    """
    ok = [s for s in seeds if s["status"] == "ok"]
    out = {}
    for name in names:
        values = np.array([np.nan if s.get(name) is None else s[name] for s in ok], dtype=float)
        values = values[np.isfinite(values)]
        out[name] = float(_AGG[agg](values)) if values.size else float("nan")
    out.update(step=step, n_ok=len(ok), diverged=sum(s["status"] == "diverged" for s in seeds))
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

    began = time.perf_counter()
    spec = ctx.spec
    point = spec.searched_point(params)
    tune_trial_id = tune.get_context().get_trial_id()
    configs = spec.trial_configs(point)
    labels = trial_labels(spec, tune_trial_id, len(configs))
    hashes = [c.config_hash() for c in configs]
    configurations = [{"trial_id": t, "config_hash": h} for t, h in zip(labels, hashes)]
    ray.get(ctx.recorder.register.remote(tune_trial_id, point, configurations, "point" in params))  # a repair's config is {"point": …}
    # Configurations landed by another trial (Tune may create a finished one again after a driver
    # died) are not trained again; this trial's own landings are (a retry lands them again, replacing).
    landed = {
        h: rows for h, rows in ray.get(ctx.recorder.done.remote(hashes)).items() if rows[0]["trial_id"] not in labels
    }
    todo = [j for j, h in enumerate(hashes) if h not in landed]
    earlier = [row for h in hashes if h in landed for row in landed[h]]
    if not todo:  # every configuration of this trial has landed: report it, train nothing
        last_step = max((int(r.get("steps_done") or 0) for r in earlier), default=0)
        ray.get(ctx.recorder.count.remote(0.0, time.perf_counter() - began))
        tune.report({**objective_metrics(earlier, spec.objective.agg, last_step, spec.objective.metric), "trained_seconds": 0.0})
        return
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    packs = Packs(spec, _packs(ctx, [configs[j] for j in todo], [labels[j] for j in todo]), earlier=earlier)
    try:
        _train_and_land(packs, ctx.recorder, began)
    except Exception:
        # Tune may retry it: the retry finds these runs by their tags and reopens them. The runs of
        # configurations that have landed stay as they are (FINISHED, beside their rows).
        runs = {label: r for run in packs.runs for label, r in run.runs.items()}
        ray.get([ctx.recorder.fail_runs.remote(r) for label, r in runs.items() if label not in packs.landed], timeout=60)
        raise


def _packs(ctx: TrialContext, configs: list[TrainConfig], labels: list[str]) -> list[TrialRun]:
    """The trial's configurations as packed models (those that share a shape train together), each resumed
    from Tune's checkpoint where it has one, with its MLflow runs open."""
    import ray
    from ray import tune

    spec = ctx.spec
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    node = ray.get_runtime_context().get_node_id() or socket.gethostname()
    seeds = list(range(spec.seeds))
    groups = pack_groups(configs)
    # Member order in a pack: configuration by configuration, each with all its seeds.
    tuning = TuningCache(Path(ctx.tuning)) if ctx.tuning else None
    trainers = [PackedTrainer([configs[j] for j in group for _ in seeds], seeds * len(group), device, tuning=tuning) for group in groups]
    seconds = [0.0] * len(groups)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # read before any MLflow run is opened: a checkpoint that fails leaves none RUNNING
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", map_location=trainers[0].device)
        # A pack resumes from its own state, matched by its configurations (a checkpoint of an
        # earlier version, without them, by position).
        keys = [tuple(configs[j].config_hash() for j in group) for group in groups]
        saved = dict(zip(map(tuple, state.get("packs", keys)), zip(state["trainers"], state["trained_seconds"])))
        for g, key in enumerate(keys):
            if key in saved:
                trainers[g].load_state_dict(saved[key][0])
                seconds[g] = saved[key][1]
    runs = []
    for group, trainer, trained in zip(groups, trainers, seconds):
        opened = {
            labels[j]: ray.get(ctx.recorder.open_runs.remote(labels[j], configs[j].as_dict(), configs[j].config_hash(), seeds))
            if ctx.tracking else None
            for j in group
        }
        runs.append(TrialRun(trainer, spec.name, [labels[j] for j in group], node, opened, trained, spec.figures))
    return runs


def _key(run: TrialRun) -> tuple[str, ...]:
    """A pack's configurations, as its checkpoint names them."""
    return tuple(config.config_hash() for config, _ in run.trainer.pack.slices())


@dataclass
class Packs:
    """A trial's packed models, trained one after the other."""

    spec: SweepSpec
    runs: list[TrialRun]
    earlier: list[dict] = field(default_factory=list)  # rows of this trial's configurations that had landed before
    landed: set[str] = field(default_factory=set)
    session_seconds: float = 0.0  # training time in this process (what this run of the driver paid for)

    def state(self) -> dict:
        return {
            "packs": [list(_key(run)) for run in self.runs],
            "trainers": [run.trainer.state_dict() for run in self.runs],
            "trained_seconds": [run.seconds for run in self.runs],
        }

    def objective(self, measured: list[tuple[Measurements, PackedTrainer]]) -> dict[str, float]:
        seeds = [*self.earlier, *(s for m, trainer in measured for s in _measured_columns(m, trainer))]
        return objective_metrics(seeds, self.spec.objective.agg, measured[-1][1].step, self.spec.objective.metric)


def _train_and_land(packs: Packs, recorder, began: float) -> None:
    import ray
    from ray import tune

    spec = packs.spec
    # A checkpoint (with a report of the objective) every `checkpoint_every` steps when the spec
    # says so, else after every _CHECKPOINT_SECONDS of training: resuming is exact either way.
    every = spec.checkpoint_every or _SLICE_STEPS
    since_checkpoint = 0.0
    done = []
    for run in packs.runs:
        trainer = run.trainer
        while not run.done:
            elapsed = run.train(steps=every - trainer.step % every)
            packs.session_seconds += elapsed
            since_checkpoint += elapsed
            if run.done or (spec.checkpoint_every is None and since_checkpoint < _CHECKPOINT_SECONDS):
                continue
            since_checkpoint = 0.0
            m = run.measure(refine=False)  # a checkpoint's energy stays on the measurement grid, its error stated
            if spec.scheduler is not None:
                # The scheduler may end the trial after this report. Its state here is staged as
                # `stopped`; the driver promotes it to the tables only if the trial does end here.
                ray.get([recorder.stage.remote(t) for t in run.tables(m, stopped=True)])
            with tempfile.TemporaryDirectory() as folder:
                torch.save(packs.state(), Path(folder) / "state.pt")
                tune.report(packs.objective([*done, (m, trainer)]), checkpoint=tune.Checkpoint.from_directory(folder))

        def land(tables, runs) -> None:
            ray.get(recorder.land.remote(tables, runs))
            packs.landed.add(tables.trial_id)

        m, _ = run.land(land)
        done.append((m, trainer))
    ray.get(recorder.count.remote(packs.session_seconds, time.perf_counter() - began))
    tune.report({**packs.objective(done), "trained_seconds": sum(run.seconds for run in packs.runs)})
