"""MLflow layout of a sweep: experiment = sweep, one parent run per trial, one child run per seed.

Runs are found again by their tags (sweep, config_hash, seed), so a retried or resumed trial, or
a trial that Tune created again for the same configuration under a new id, continues its runs
instead of opening new ones, and a history already logged is not logged twice. Runs carry the
host and pid of the driver that opened them: a run left RUNNING by a process that is gone is
ended KILLED by the next command in the same store (`end_orphaned_runs`), and at the end of a sweep
no run of it stays RUNNING (`settle_runs`). Everything goes through `MlflowClient` in batches: no
global MLflow state, no call per metric per step.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drm.metrics import metric_names
from drm.storage import Storage, first_line
from pipeline._spec_fields import PARAMS
from pipeline.host import Process
from pipeline.reconcile import Inventory
from pipeline.run_names import VIEW_TAG, Layout, child_name, parameter_tags, parent_name
from pipeline.tables import PROFILES, TrialTables

# MLflow limits one log_batch call to 1000 metrics.
_BATCH = 1000
# The UI opens an experiment of this kind on its runs (untagged, MLflow 3 opens its GenAI pages).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# A seed's run ends as its row says: a scheduler's stop is KILLED, a diverged or failed seed FAILED.
_RUN_STATUS = {"ok": "FINISHED", "stopped": "KILLED", "diverged": "FAILED", "failed": "FAILED"}


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


def ensure_experiment(uri: str, name: str, artifact_root: Path | None, view: str | None = None) -> str:
    """Create (once, from the driver) the store and the sweep's experiment, of kind model training,
    with its runs view (`view`, pipeline.run_names.runs_view); returns its id."""
    from mlflow.tracking import MlflowClient

    _quiet()
    with _store_lock(uri):  # two commands creating one SQLite store at once race in its migrations
        client = MlflowClient(uri)
        tags = {**EXPERIMENT_KIND, **({VIEW_TAG: view} if view is not None else {})}
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            for key, value in tags.items():  # one made by an earlier version, or by hand
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        location = artifact_root.resolve().as_uri() + f"/{name}" if artifact_root is not None else None
        return client.create_experiment(name, artifact_location=location, tags=tags)


# What every process of ours that talks to MLflow runs with (unless the user says otherwise): no usage
# events sent to MLflow's makers (3.x sends them by default), and no "View run … at URL" line printed
# for every run a server records (60,000 lines over a 10,000-trial sweep). `drmfm` sets them at
# start (its local Ray and `drmfm ui` inherit them); the recorder actor carries them to a cluster.
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def quiet_mlflow() -> dict[str, str]:
    """MLFLOW_ENV in this process's environment, where the user has not set them; returns what is set."""
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in MLFLOW_ENV}


def _quiet() -> None:
    """The SQL store logs its first-use migrations, and each failed statement with its traceback:
    the failure reaches the caller, which says it once (MLflow is a view of the tables)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@contextlib.contextmanager
def _store_lock(uri: str):
    """An exclusive lock beside a SQLite store (held while it is created and migrated); nothing for a server."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with open(uri[len("sqlite:///") :] + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare(uri: str, experiment: str, artifact_root: Path | None, view: str | None = None) -> str | None:
    """Make the store and the experiment ready, and end the runs dead processes of this host left
    RUNNING; None if the store is usable, else why not (one line)."""
    why = probe(uri)
    if why is not None:
        return why
    try:
        ensure_experiment(uri, experiment, artifact_root, view)
    except Exception as e:  # noqa: BLE001 - the tables are the record; MLflow is a view of them
        return f"{type(e).__name__}: {first_line(e)}"
    try:
        end_orphaned_runs(uri)
    except Exception as e:  # noqa: BLE001 - a store that refuses the search still takes this run's runs
        print(f"drmfm: warning: MLflow at {uri}: runs left RUNNING by dead processes were not ended ({type(e).__name__})", file=sys.stderr)
    return None


def _owner_tags(driver: Process) -> dict[str, str]:
    return {"host": driver.host, "pid": str(driver.pid), "pid_started": str(driver.started or ""), "pid_space": driver.space or ""}


def _owner(tags: dict[str, str]) -> Process | None:
    if "host" not in tags or not tags.get("pid", "").isdigit():
        return None
    started = tags.get("pid_started", "")
    return Process(tags["host"], int(tags["pid"]), int(started) if started.isdigit() else None, tags.get("pid_space") or None)


def end_orphaned_runs(uri: str) -> int:
    """End KILLED every run of this host left RUNNING by a process that is gone; how many."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    here = Process.current().host
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    ended = 0
    for start in range(0, len(ids), 100):
        query = f"attributes.status = 'RUNNING' and tags.host = '{here}'"
        for run in client.search_runs(ids[start : start + 100], filter_string=query, max_results=50000):
            owner = _owner(run.data.tags)
            if owner is not None and owner.here() and not owner.alive():
                client.set_tag(run.info.run_id, "status", "killed")
                client.set_terminated(run.info.run_id, "KILLED")
                ended += 1
    return ended


def parent_metrics(rows: list[dict], objective: tuple[str, str] = ("energy", "median")) -> dict[str, float]:
    """A parent run's metrics: the median of each metric over the seeds whose status is ok, its
    interquartile range where two or more seeds give it (one value has no spread to show), the
    objective (metric, agg) as Tune aggregates it, and how many seeds there are and are ok."""
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, float] = {}
    for key in metric_names():
        values = np.array([r[key] for r in ok if r.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            out[f"{key}_median"] = float(q50)
            if values.size >= 2:
                out[f"{key}_iqr"] = float(q75 - q25)
            if key == objective[0]:
                out[f"{key}_{objective[1]}"] = float(getattr(np, objective[1])(values))  # AGGREGATES are numpy's names
    out["n_ok"], out["n_seeds"] = float(len(ok)), float(len(rows))
    return out


def _note(index: dict[str, dict[int | None, str]], tags: dict[str, str], run_id: str) -> None:
    """Index a run by its configuration and role (None: the parent; a seed: its child), first come first kept."""
    role = tags.get("role")
    key = None if role == "parent" else int(tags["seed"]) if role == "child" and "seed" in tags else ""
    if key != "" and "config_hash" in tags:
        index.setdefault(tags["config_hash"], {}).setdefault(key, run_id)


@dataclass
class TrialRuns:
    """The parent run of a trial and the child run of each of its seeds."""

    parent: str
    children: dict[int, str]


class Tracker:
    """Records one trial's runs in the sweep's experiment, named and summarised as `layout` says
    (pipeline.run_names.Layout: the sweep's varying parameters and its objective)."""

    def __init__(self, uri: str, experiment: str, sweep: str, driver: Process | None = None, layout: Layout | None = None,
                 indexed: bool = False):
        """`indexed`: keep an index of the sweep's runs by configuration (a sweep's recorder: the one
        tracker of the driver that holds the lease), so that a new configuration costs no search, whose
        time grows with the store (270 ms at 9,000 configurations against a local server). A sweep
        without runs yet starts with an empty index; a resumed one reads its runs in the background
        (150 s for 30,000 runs) and searches per configuration until that is done. Without it, each
        configuration is one search (`settle`, which opens few)."""
        from mlflow.tracking import MlflowClient

        _quiet()
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            raise RuntimeError(f"MLflow experiment {experiment!r} does not exist (the driver creates it)")
        self.experiment_id = exp.experiment_id
        self.sweep = sweep
        self.owner = _owner_tags(driver or Process.current())
        self.layout = layout or Layout()
        self._created: set[str] = set()  # runs this tracker created that `finish` has not logged yet
        self._index: dict[str, dict[int | None, str]] | None = None
        self._made: dict[str, dict[int | None, str]] = {}  # runs created while the index is read, by configuration
        self._index_lock = threading.Lock()
        if indexed:
            if not self.client.search_runs([self.experiment_id], filter_string=f"tags.sweep = '{sweep}'", max_results=1):
                self._index = {}
            else:
                threading.Thread(target=self._read_index, name="mlflow-index", daemon=True).start()

    def _read_index(self) -> None:
        try:
            index = self._runs_by_config(f"tags.sweep = '{self.sweep}'")
        except Exception:  # noqa: BLE001 - without an index every configuration is searched, as before
            return
        with self._index_lock:
            for config_hash, runs in self._made.items():  # created while the index was read
                for key, run in runs.items():
                    index.setdefault(config_hash, {}).setdefault(key, run)
            self._index, self._made = index, {}

    def _runs_by_config(self, query: str) -> dict[str, dict[int | None, str]]:
        """The runs `query` finds, paged: {config_hash: {None: parent, seed: child}}, the first started of each."""
        index: dict[str, dict[int | None, str]] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=query, max_results=5000, order_by=["attributes.start_time ASC"],
                                           page_token=token)
            for run in page:
                _note(index, run.data.tags, run.info.run_id)
            token = page.token
            if not token:
                return index

    def _found(self, config_hash: str) -> dict[int | None, str]:
        """The configuration's runs: {None: parent, seed: child}, from the index, or in one query."""
        with self._index_lock:
            if self._index is not None:
                return dict(self._index.get(config_hash, {}))
        return self._runs_by_config(f"tags.sweep = '{self.sweep}' and tags.config_hash = '{config_hash}'").get(config_hash, {})

    def open(self, trial_id: str, seeds: list[int], params: dict[str, Any], config_hash: str) -> TrialRuns:
        """Find (by sweep, config_hash, seed) or create the configuration's runs, with its params;
        found runs now belong to `trial_id` and this driver. A new configuration costs one query and
        two calls per run; `finish` then logs each run in one batch."""
        from mlflow.entities import Param

        tags = {"sweep": self.sweep, "trial_id": trial_id, "config_hash": config_hash, **self.owner}
        if params:  # every caller passes the configuration; without it, found runs keep their names
            tags.update(parameter_tags(params, self.layout.named))
        plain = [Param(k, str(v)) for k, v in sorted(params.items())]
        name = parent_name(params, self.layout.named)
        found = self._found(config_hash)
        parent = found.get(None)
        if parent is None:
            parent = self._create(name, {**tags, "role": "parent"}, plain)
        else:
            self._reopen(parent, {**tags, "mlflow.runName": name} if params else tags)
        children = {}
        for seed in seeds:
            child = found.get(seed)
            if child is None:
                child_tags = {**tags, "role": "child", "seed": str(seed), "mlflow.parentRunId": parent}
                child = self._create(child_name(seed), child_tags, plain + [Param("seed", str(seed))])
            else:
                self._reopen(child, {**tags, "mlflow.runName": child_name(seed)})
            children[seed] = child
        return TrialRuns(parent, children)

    def _create(self, name: str, tags: dict[str, str], params: list) -> str:
        """A new run with its tags and params; `finish` knows it has logged nothing yet."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run, params=params)
        self._created.add(run)
        with self._index_lock:  # into the index, or, while it is still being read, beside it
            _note(self._made if self._index is None else self._index, tags, run)
        return run

    def _reopen(self, run_id: str, tags: dict[str, str]) -> None:
        """A found run continues under this trial and driver; a finished one stays finished."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if self.client.get_run(run_id).info.status != "FINISHED":
            self.client.update_run(run_id, status="RUNNING")

    def finish(self, runs: TrialRuns, tables: TrialTables) -> None:
        """Final metrics per seed and their aggregates on the parent; histories once; figures.

        A run this tracker created logs everything in one batch; a found one (a retried or resumed
        trial's) is asked first what it holds, so that nothing is logged twice."""
        from mlflow.entities import Metric, RunTag

        rows = tables.replicates.to_pylist()
        curves = tables.curves.to_pandas()
        now = int(time.time() * 1000)

        def metric(key: str, value: Any, step: int = 0) -> Metric | None:
            if value is None or not np.isfinite(value):
                return None
            return Metric(key, float(value), now, step)

        final_keys = metric_names()
        for row in rows:
            run = runs.children[row["seed"]]
            fresh = run in self._created
            logged = []
            if fresh or not self.client.get_run(run).data.metrics:  # a retried trial logs its results once
                logged += [metric(k, row.get(k)) for k in final_keys]
            if fresh or not self.client.get_metric_history(run, "loss"):  # …and its history once
                mine = curves[curves["seed"] == row["seed"]]
                for step, loss, energy_mc in zip(mine["step"], mine["loss"], mine["energy_mc"]):
                    logged += [metric("loss", loss, int(step)), metric("energy_mc", energy_mc, int(step))]
            self._log(run, [m for m in logged if m is not None], [RunTag("status", row["status"])])
            if row["seed"] in tables.figures:  # figures: seed
                self._log_png(run, f"profile-seed{row['seed']}.png", tables.figures[row["seed"]])
            self.client.set_terminated(run, _RUN_STATUS[row["status"]])
            self._created.discard(run)
        aggregates = [metric(k, v) for k, v in parent_metrics(rows, (self.layout.objective, self.layout.agg)).items()]
        if runs.parent in self._created or not self.client.get_run(runs.parent).data.metrics:
            self._log(runs.parent, [m for m in aggregates if m is not None])
        if None in tables.figures:  # figures: trial (every seed overlaid)
            self._log_png(runs.parent, "profiles.png", tables.figures[None])
        self.client.set_terminated(runs.parent, "KILLED" if all(r["status"] == "stopped" for r in rows) else "FINISHED")
        self._created.discard(runs.parent)

    def fail(self, runs: TrialRuns) -> None:
        """End a trial's unfinished runs FAILED (runs whose results were logged stay FINISHED)."""
        for run in [runs.parent, *runs.children.values()]:
            if self.client.get_run(run).info.status != "FINISHED":
                self.client.set_terminated(run, "FAILED")

    def end(self, config_hash: str, status: str) -> None:
        """End the unfinished runs of a configuration as FAILED (retries spent) or KILLED (stopped by a scheduler)."""
        query = f"tags.sweep = '{self.sweep}' and tags.config_hash = '{config_hash}' and attributes.status != 'FINISHED'"
        for run in self.client.search_runs([self.experiment_id], filter_string=query):
            self.client.set_tag(run.info.run_id, "status", "failed" if status == "FAILED" else "stopped")
            self.client.set_terminated(run.info.run_id, status)

    def settle(self, results: Storage, found: Inventory) -> tuple[int, int]:
        """At the end of a sweep (its driver holds the lease: no other driver's trial is running), no run
        of it stays RUNNING, and every run its rows name ends as its row says.

        A configuration whose rows stand (`found`: the driver's last check of the tables) whose runs
        are RUNNING or end otherwise than its rows say (`_RUN_STATUS`; a run a killed driver left was
        ended KILLED) gets its results from the tables; any other RUNNING run of it, and every RUNNING
        run of a configuration without rows, ends KILLED. Returns (configurations finished, runs killed)."""
        landed = found.by_config()
        query = f"tags.sweep = '{self.sweep}' and attributes.status != 'FINISHED'"
        unfinished = self.client.search_runs([self.experiment_id], filter_string=query, max_results=50000)
        finished = killed = 0
        for config_hash in sorted({r.data.tags.get("config_hash", "") for r in unfinished}):
            mine = [r for r in unfinished if r.data.tags.get("config_hash", "") == config_hash]
            trial = landed.get(config_hash)
            if trial is not None and trial.done:
                replicates = results.read_table("replicates", f"{trial.trial_id}.parquet")
                rows = replicates.to_pylist()
                want = {r["mlflow_run_id"]: _RUN_STATUS[r["status"]] for r in rows if r.get("mlflow_run_id")}
                parent = rows[0].get("mlflow_parent_run_id")
                if parent:
                    want[parent] = "KILLED" if all(r["status"] == "stopped" for r in rows) else "FINISHED"
                named = [r for r in mine if r.info.run_id in want]
                if not want or any(r.info.status != want[r.info.run_id] for r in named):
                    curves = results.read_table("curves", f"{trial.trial_id}.parquet")
                    params = {k: rows[0][k] for k in PARAMS if k in rows[0]}
                    runs = self.open(trial.trial_id, replicates.column("seed").to_pylist(), params, config_hash)
                    self.finish(runs, TrialTables(trial.trial_id, replicates, curves, PROFILES.empty_table(), b""))
                    finished += 1
                    want.update({runs.parent: "", **{c: "" for c in runs.children.values()}})
                mine = [r for r in mine if r.info.run_id not in want]
            for run in mine:
                if run.info.status == "RUNNING":
                    self.client.set_tag(run.info.run_id, "status", "killed")
                    self.client.set_terminated(run.info.run_id, "KILLED")
                    killed += 1
        return finished, killed

    def _log(self, run_id: str, metrics: list, tags: list | None = None) -> None:
        """Metrics (and tags) in as few calls as MLflow's batch limit allows (none for nothing)."""
        if not metrics and not tags:
            return
        for start in range(0, max(len(metrics), 1), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH], tags=(tags or []) if start == 0 else [])

    def _log_png(self, run_id: str, name: str, png: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(png)
            self.client.log_artifact(run_id, str(path))
