"""A trial's tables from its trained pack: one replicate row per seed (every registered metric, the
configuration, the provenance), the learning curves, the profiles, the weights, the figures."""

from __future__ import annotations

import datetime as dt
import functools
import io
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from drm.config import TrainConfig
from drm.measurement import Measurements
from drm.metrics import metrics
from drm.profiles import coarsened, stored
from drm.train import PackedTrainer
from pipeline.figures import drawn
from pipeline.tables import TrialTables, replicates_schema


@functools.cache
def code_version() -> str:
    """The package version, with the git commit when run from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("drmfm")
    except PackageNotFoundError:
        v = "unknown"
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+g{sha}" if sha else v


def weights_bytes(trainer: PackedTrainer, members: range | None = None) -> bytes:
    """The final parameters of `members` (default all; leading axis K), with their seeds and configuration."""
    members = members or range(trainer.model.K)
    pick = slice(members.start, members.stop)
    state = {
        "config": trainer.configs[members.start].as_dict(),
        "seeds": trainer.model.seeds[pick],
        # Weights and biases lead with the member axis; the map's B does only when it is per member.
        "state_dict": {
            k: (v[pick] if not k.startswith("features.") or v.dim() == 3 else v).detach().cpu()
            for k, v in trainer.model.state_dict().items()
        },
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _nullable(values: np.ndarray | None, k: int, cast: type) -> object:
    if values is None or not np.isfinite(values[k]):
        return None
    return cast(values[k])


def _measured(values: dict[str, np.ndarray | None], k: int, diverged: bool) -> dict[str, object]:
    """Member k's value of every metric; a diverged member's are null (its frozen weights measure nothing)."""
    return {metric.name: None if diverged else _nullable(values.get(metric.name), k, metric.kind) for metric in metrics()}


def _config_columns(c: TrainConfig) -> dict[str, object]:
    """The resolved configuration and provenance columns of a trial's rows."""
    names = ("problem", "depth", "width", "activation", "rho", "fourier", "fourier_map", "epsilon", "penalty", "lr",
             "epochs", "batch", "boundary_batch", "dtype", "resample", "transition_threshold")
    return {
        **{name: getattr(c, name) for name in names},
        "dim": c.dim,
        "config_hash": c.config_hash(),
        "torch_version": torch.__version__,
        "code_version": code_version(),
    }


def replicate_rows(
    trainer: PackedTrainer,
    m: Measurements,
    *,
    sweep: str,
    trial_id: str,
    wall_seconds: float,
    node: str,
    mlflow_runs: tuple[str, dict[int, str]] | None = None,
    stopped: bool = False,
    members: range | None = None,
) -> pa.Table:
    """One row per seed of `members` (default all), which share one configuration.

    `stopped`: the trial may end here (a scheduler's snapshot), not at its last step.
    """
    members = members or range(trainer.model.K)
    c = trainer.configs[members.start]
    status = [("stopped" if stopped and s == "ok" else s) for s in trainer.status()]
    parent, children = mlflow_runs if mlflow_runs is not None else (None, {})
    diverged_step = trainer.diverged_step.cpu().tolist()
    values = dict(m.values)
    if values.get("loss_final") is None:  # measured without the trainer's last loss: the trainer has it
        values["loss_final"] = trainer.last_loss.detach().cpu().numpy()
    finished = dt.datetime.now(dt.timezone.utc)
    rows = []
    for k in members:
        seed = trainer.model.seeds[k]
        rows.append(
            {
                "sweep": sweep,
                "trial_id": trial_id,
                "seed": seed,
                **_config_columns(c),
                "device": str(trainer.device),
                "pack_size": trainer.model.K,
                **_measured(values, k, diverged=status[k] == "diverged"),
                "status": status[k],
                "error": f"non-finite loss at step {diverged_step[k]}" if status[k] == "diverged" else None,
                "wall_seconds": wall_seconds,
                "steps_per_second": trainer.step / wall_seconds if wall_seconds > 0 else None,
                "node": node,
                "mlflow_run_id": children.get(seed),
                "mlflow_parent_run_id": parent,
                "finished_at": finished,
                "diverged_step": diverged_step[k] if diverged_step[k] >= 0 else None,
                "steps_done": trainer.step,
                "step_mode": trainer.step_mode,
            }
        )
    return pa.Table.from_pylist(rows, schema=replicates_schema())


def failed_rows(config: TrainConfig, seeds: list[int], *, sweep: str, trial_id: str, error: str) -> pa.Table:
    """Rows of a trial that failed (its retries spent): the configuration, status `failed`, the error."""
    finished = dt.datetime.now(dt.timezone.utc)
    base = {
        "sweep": sweep, "trial_id": trial_id, **_config_columns(config), "pack_size": len(seeds),
        "status": "failed", "error": error, "finished_at": finished,
    }
    return pa.Table.from_pylist([{**base, "seed": seed} for seed in seeds], schema=replicates_schema())


def curve_rows(trainer: PackedTrainer, *, sweep: str, trial_id: str, members: range | None = None) -> pa.Table:
    members = members or range(trainer.model.K)
    pick = slice(members.start, members.stop)
    curves = trainer.curves()
    loss, energy_mc = curves.loss[:, pick], curves.energy_mc[:, pick]
    n, K = loss.shape
    return pa.table(
        {
            "sweep": [sweep] * (n * K),
            "trial_id": [trial_id] * (n * K),
            "seed": np.repeat(np.array(trainer.model.seeds[pick]), n),
            "step": np.tile(curves.steps, K),
            "loss": loss.T.reshape(-1).astype(np.float64),
            "energy_mc": energy_mc.T.reshape(-1).astype(np.float64),
            "lr": np.tile(curves.lr, K),
            # -1: a point a checkpoint of version 0.1 logged without counting it
            "transitions": _counts(curves.transitions[:, pick]),
            "bands": _counts(curves.bands[:, pick]) if curves.bands is not None else pa.nulls(n * K, pa.int64()),
        }
    )


def _counts(counts: np.ndarray) -> pa.Array:
    """(n, K) counts as the curves' column, member by member; -1 (a point logged uncounted) is null."""
    flat = counts.T.reshape(-1)
    return pa.array(flat, mask=flat < 0, type=pa.int64())


def profile_rows(seeds: list[int], m: Measurements, *, sweep: str, trial_id: str, nodes: int,
                 members: range | None = None) -> pa.Table:
    """The profiles table of `members`: u and du on at most `nodes` nodes per axis (drm.profiles)."""
    members = members or range(len(seeds))
    pick = slice(members.start, members.stop)
    grid = coarsened(m.grid, m.profile_u[pick], m.profile_du[pick], nodes)
    return stored(grid, seeds[pick], sweep=sweep, trial_id=trial_id)


def trial_tables(
    trainer: PackedTrainer,
    m: Measurements,
    *,
    sweep: str,
    trial_id: str,
    wall_seconds: float,
    node: str,
    mlflow_runs: tuple[str, dict[int, str]] | None = None,
    stopped: bool = False,
    members: range | None = None,
    figures: str = "trial",
) -> TrialTables:
    """The rows, curves, profiles and weights of `members` (default all; one configuration), and,
    when they have MLflow runs, their `figures` (pipeline.spec.FIGURES)."""
    replicates = replicate_rows(
        trainer, m, sweep=sweep, trial_id=trial_id, wall_seconds=wall_seconds, node=node, mlflow_runs=mlflow_runs,
        stopped=stopped, members=members,
    )
    profiles = profile_rows(trainer.model.seeds, m, sweep=sweep, trial_id=trial_id, members=members,
                            nodes=trainer.problem.domain.profile_nodes)
    return TrialTables(
        trial_id=trial_id,
        replicates=replicates,
        curves=curve_rows(trainer, sweep=sweep, trial_id=trial_id, members=members),
        profiles=profiles,
        weights=weights_bytes(trainer, members),
        figures={} if mlflow_runs is None or stopped else drawn(
            figures, profiles, replicates, f"{sweep} {trial_id}", f"u_{trainer.problem.axis_name}"
        ),
    )
