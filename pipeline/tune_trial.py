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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def objective_metrics(m: Measurements, trainer: PackedTrainer, agg: str) -> dict[str, float]:
    """Every result metric aggregated over the seeds that did not diverge (NaN when none is left)."""
    ok = np.array([s == "ok" for s in trainer.status()])
    columns = {
        "energy": m.energy,
        "transitions": m.transitions,
        "bands": m.bands,
        "transitions_wall": m.transitions_wall,
        "transitions_per_period": m.transitions_per_period,
        "boundary_l2": m.boundary_l2,
        "loss_final": trainer.last_loss.detach().cpu().numpy(),
    }
    out = {}
    for name in METRICS:
        values = columns[name]
        out[name] = float(_AGG[agg](np.asarray(values, dtype=float)[ok])) if values is not None and ok.any() else float("nan")
    out.update(step=trainer.step, n_ok=int(ok.sum()), diverged=int((~ok).sum()))
    return out


def run_tune_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """The Ray Tune function trainable (module-level, so that it pickles)."""
    import ray
    from ray import tune

    spec = ctx.spec
    config = spec.trial_config({k: params[k] for k in spec.space})
    trial_id = tune.get_context().get_trial_id()
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    trainer = PackedTrainer(config, list(range(spec.seeds)), device)  # graphed on CUDA
    trained_seconds = 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", map_location=trainer.device)
        trainer.load_state_dict(state["trainer"])
        trained_seconds = float(state["trained_seconds"])
    node = ray.get_runtime_context().get_node_id() or socket.gethostname()
    seeds = list(range(spec.seeds))
    runs = ray.get(ctx.recorder.open_runs.remote(trial_id, config.as_dict(), config.config_hash(), seeds)) if ctx.tracking else None
    try:
        _train_and_land(trainer, config, spec, trial_id, node, ctx.recorder, runs, trained_seconds)
    except Exception:
        # Tune may retry it: the retry finds these runs by their tags and reopens them.
        ray.get(ctx.recorder.fail_runs.remote(runs), timeout=60)
        raise


def _train_and_land(trainer, config, spec: SweepSpec, trial_id: str, node: str, recorder, runs, trained_seconds: float) -> None:
    import ray
    from ray import tune

    def tables(m: Measurements, stopped: bool = False):
        return trial_tables(trainer, m, sweep=spec.name, trial_id=trial_id, wall_seconds=trained_seconds, node=node,
                            mlflow_runs=runs, stopped=stopped)

    # A checkpoint (with a report of the objective) every `checkpoint_every` steps when the spec
    # says so, else after every _CHECKPOINT_SECONDS of training: resuming is exact either way.
    every = spec.checkpoint_every or _SLICE_STEPS
    since_checkpoint = 0.0
    while trainer.step < config.epochs:
        start = time.perf_counter()
        trainer.run(steps=every - trainer.step % every)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        elapsed = time.perf_counter() - start
        trained_seconds += elapsed
        since_checkpoint += elapsed
        if trainer.step >= config.epochs:
            break
        if spec.checkpoint_every is None and since_checkpoint < _CHECKPOINT_SECONDS:
            continue
        since_checkpoint = 0.0
        m = measure(trainer.model, config)
        if spec.scheduler is not None:
            # The scheduler may end the trial after this report. Its state here is staged as
            # `stopped`; the driver promotes it to the tables only if the trial does end here.
            ray.get(recorder.stage.remote(tables(m, stopped=True)))
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"trainer": trainer.state_dict(), "trained_seconds": trained_seconds}, Path(folder) / "state.pt")
            tune.report(objective_metrics(m, trainer, spec.objective.agg), checkpoint=tune.Checkpoint.from_directory(folder))
    m = measure(trainer.model, config)
    ray.get(recorder.land.remote(tables(m), runs))
    tune.report({**objective_metrics(m, trainer, spec.objective.agg), "trained_seconds": trained_seconds})
