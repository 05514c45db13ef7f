"""MLflow layout of a sweep: experiment = sweep, one parent run per trial, one child run per seed.

Runs are found again by their tags (sweep, trial_id, seed), so a retried or resumed trial
continues its runs instead of opening new ones, and a history already logged is not logged twice.
Everything goes through `MlflowClient` in batches: no global MLflow state, no call per metric per step.
"""

from __future__ import annotations

import logging
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.tables import TrialTables

# MLflow limits one log_batch call to 1000 metrics.
_BATCH = 1000


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def probe(uri: str, timeout: float = 3.0) -> str | None:
    """None if the tracking store answers, else why not (one line)."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        return None if folder.is_dir() else f"folder {folder} does not exist"
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                return None if response.status == 200 else f"HTTP {response.status}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return str(getattr(e, "reason", e))
    return None


def ensure_experiment(uri: str, name: str, artifact_root: Path | None) -> str:
    """Create (once, from the driver) the store and the sweep's experiment; returns its id."""
    from mlflow.tracking import MlflowClient

    # The store's first-use migrations log at INFO; a command's user needs none of it.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root.resolve().as_uri() + f"/{name}" if artifact_root is not None else None
    return client.create_experiment(name, artifact_location=location)


@dataclass
class TrialRuns:
    """The parent run of a trial and the child run of each of its seeds."""

    parent: str
    children: dict[int, str]


class Tracker:
    """Records one trial's runs in the sweep's experiment."""

    def __init__(self, uri: str, experiment: str, sweep: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            raise RuntimeError(f"MLflow experiment {experiment!r} does not exist (the driver creates it)")
        self.experiment_id = exp.experiment_id
        self.sweep = sweep

    def _find(self, trial_id: str, seed: int | None) -> str | None:
        role = "parent" if seed is None else "child"
        query = f"tags.sweep = '{self.sweep}' and tags.trial_id = '{trial_id}' and tags.role = '{role}'"
        if seed is not None:
            query += f" and tags.seed = '{seed}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def open(self, trial_id: str, seeds: list[int], params: dict[str, Any], config_hash: str) -> TrialRuns:
        """Find or create the trial's runs (tagged), with the configuration as params."""
        from mlflow.entities import Param, RunTag

        tags = {"sweep": self.sweep, "trial_id": trial_id, "config_hash": config_hash}
        plain = [Param(k, str(v)) for k, v in sorted(params.items())]
        parent = self._find(trial_id, None)
        if parent is None:
            parent = self.client.create_run(self.experiment_id, run_name=trial_id, tags={**tags, "role": "parent"}).info.run_id
            self.client.log_batch(parent, params=plain)
        elif self.client.get_run(parent).info.status != "FINISHED":  # a finished trial's runs stay finished
            self.client.update_run(parent, status="RUNNING")
        children = {}
        for seed in seeds:
            child = self._find(trial_id, seed)
            if child is None:
                child_tags = {**tags, "role": "child", "seed": str(seed), "mlflow.parentRunId": parent}
                child = self.client.create_run(self.experiment_id, run_name=f"{trial_id}-s{seed}", tags=child_tags).info.run_id
                self.client.log_batch(child, params=plain + [Param("seed", str(seed))], tags=[RunTag("seed", str(seed))])
            elif self.client.get_run(child).info.status != "FINISHED":
                self.client.update_run(child, status="RUNNING")
            children[seed] = child
        return TrialRuns(parent, children)

    def finish(self, runs: TrialRuns, tables: TrialTables) -> None:
        """Final metrics per seed and their aggregates on the parent; histories once; figures."""
        from mlflow.entities import Metric

        rows = tables.replicates.to_pylist()
        curves = tables.curves.to_pandas()
        now = int(time.time() * 1000)

        def metric(key: str, value: Any, step: int = 0) -> Metric | None:
            if value is None or not np.isfinite(value):
                return None
            return Metric(key, float(value), now, step)

        final_keys = ("energy", "transitions", "bands", "transitions_wall", "transitions_per_period", "boundary_l2", "loss_final")
        for row in rows:
            run = runs.children[row["seed"]]
            if not self.client.get_run(run).data.metrics:  # a retried trial logs its results once
                finals = [metric(k, row.get(k)) for k in final_keys]
                self._log(run, [m for m in finals if m is not None])
            if not self.client.get_metric_history(run, "loss"):  # a retried trial logs its history once
                mine = curves[curves["seed"] == row["seed"]]
                history = []
                for step, loss, energy_mc in zip(mine["step"], mine["loss"], mine["energy_mc"]):
                    history += [metric("loss", loss, int(step)), metric("energy_mc", energy_mc, int(step))]
                self._log(run, [m for m in history if m is not None])
            if row["seed"] in tables.figures:
                self._log_png(run, f"profile-seed{row['seed']}.png", tables.figures[row["seed"]])
            self.client.set_tag(run, "status", row["status"])
            self.client.set_terminated(run, "FINISHED" if row["status"] == "ok" else "FAILED")
        aggregates = []
        for key in final_keys:
            values = [r[key] for r in rows if r.get(key) is not None and r["status"] == "ok"]
            if values:
                for name, fn in (("median", np.median), ("mean", np.mean), ("min", np.min), ("max", np.max)):
                    aggregates.append(metric(f"{key}_{name}", fn(values)))
        aggregates.append(metric("n_ok", sum(r["status"] == "ok" for r in rows)))
        if not self.client.get_run(runs.parent).data.metrics:
            self._log(runs.parent, [m for m in aggregates if m is not None])
        self.client.set_terminated(runs.parent, "FINISHED")

    def fail(self, runs: TrialRuns) -> None:
        """End a trial's unfinished runs FAILED (runs whose results were logged stay FINISHED)."""
        for run in [runs.parent, *runs.children.values()]:
            if self.client.get_run(run).info.status != "FINISHED":
                self.client.set_terminated(run, "FAILED")

    def end(self, trial_id: str, status: str) -> None:
        """End every run of a trial (found by its tags) as FAILED or KILLED (stopped by a scheduler)."""
        query = f"tags.sweep = '{self.sweep}' and tags.trial_id = '{trial_id}'"
        for run in self.client.search_runs([self.experiment_id], filter_string=query):
            self.client.set_tag(run.info.run_id, "status", "failed" if status == "FAILED" else "stopped")
            self.client.set_terminated(run.info.run_id, status)

    def _log(self, run_id: str, metrics: list) -> None:
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def _log_png(self, run_id: str, name: str, png: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(png)
            self.client.log_artifact(run_id, str(path))
