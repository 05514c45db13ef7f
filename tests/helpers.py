"""Helpers the test modules share: the command, specs, waiting, the tables and runs a sweep leaves,
small configurations and synthetic result rows. Test modules import from here, never from each other."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from drm.config import TrainConfig
from drm.problems import get_problem
from pipeline.tables import read_replicates

ROOT = Path(__file__).resolve().parent.parent


REQUIRED = """sweep, trial_id, seed, problem, dim, depth, width, activation, rho, fourier, fourier_map, epsilon,
penalty, lr, epochs, batch, boundary_batch, dtype, device, pack_size, energy, boundary_l2, loss_final,
transitions, transitions_per_period, transitions_wall, bands, status, error, wall_seconds,
steps_per_second, node, mlflow_run_id, mlflow_parent_run_id, config_hash, resample, torch_version,
code_version, finished_at, energy_quadrature_error, energy_grid, count_tau_sensitive"""


def drmfm(*args: str, home: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    extra = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args, *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def write_spec(folder: Path, **fields) -> Path:
    spec = {
        "name": "two",
        "problem": "double_well",
        "fixed": {"width": 32, "epochs": 300},
        "space": {"fourier": ["none", 2]},
        "seeds": 3,
        "resources": {"cpu": 1},
    }
    spec.update(fields)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def benchmark_script(name: str):
    """The module benchmarks/<name>.py (a script, not a package), loaded for a test."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_mixed_spec(folder: Path, depths: list[int]) -> Path:
    """A tiny 2D spec whose trials carry packs mixed in frequency and ε (benchmarks/mixed_packs.py's input)."""
    return write_spec(folder, name="mixed", problem="twin_branching", seeds=2, search={"sampler": "grid"}, pack=["fourier", "epsilon"],
                      fixed={"width": 8, "batch": 12, "boundary_batch": 8, "epochs": 10},
                      space={"depth": depths, "fourier": ["none", 1, 2], "epsilon": [0.0, 0.01]})


def running_runs(home: Path, experiment: str) -> int:
    """How many of `experiment`'s MLflow runs are RUNNING, read from the store read-only: a poll that
    opened an MlflowClient could race the process under test at creating (migrating) the database."""
    db = home / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as store:
            (count,) = store.execute(
                "SELECT COUNT(*) FROM runs JOIN experiments USING (experiment_id) WHERE experiments.name = ? AND runs.status = 'RUNNING'",
                (experiment,),
            ).fetchone()
        return count
    except sqlite3.Error:  # the store is still being created
        return 0


def mlflow_runs(home: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


_spawned: list[subprocess.Popen] = []


def spawn(*args, **kwargs) -> subprocess.Popen:
    """subprocess.Popen, and the process is ended after the test whatever the test's outcome (see reap)."""
    process = subprocess.Popen(*args, **kwargs)
    _spawned.append(process)
    return process


def reap() -> None:
    """End what `spawn` started and the test left running (its process group when it has its own), so that
    no process outlives a failed test and no Popen is collected, still running, in the middle of another test."""
    while _spawned:
        process = _spawned.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(process.pid) == process.pid:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=30)


def start_sweep(spec: Path, home: Path, *flags: str, output: bool = True) -> subprocess.Popen:
    """A driver in its own process group; `output`: its stdout and stderr piped (read with communicate)."""
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    return spawn(
        [sys.executable, "-m", "pipeline.cli", "sweep", str(spec), "--home", str(home), *flags],
        cwd=ROOT, stdout=pipe, stderr=pipe, text=True, start_new_session=True,
    )


def replicate_rows(home: Path, name: str) -> list[dict]:
    return read_replicates(home / "results" / name).to_pylist()


def each_once(rows: list[dict], configurations: int, seeds: int) -> None:
    assert len(rows) == configurations * seeds
    assert len({(r["config_hash"], r["seed"]) for r in rows}) == len(rows)
    assert len({r["config_hash"] for r in rows}) == configurations


def mlflow_whole(home: Path, name: str, configurations: int, seeds: int) -> None:
    """One parent per configuration and one child per seed, none RUNNING; the rows name finished
    children with their results, whose histories were logged once."""
    from mlflow.tracking import MlflowClient

    runs = mlflow_runs(home, name)
    roles = [r.data.tags["role"] for r in runs]
    assert roles.count("parent") == configurations and roles.count("child") == configurations * seeds
    assert not [r for r in runs if r.info.status == "RUNNING"]
    rows = replicate_rows(home, name)
    children = {r.info.run_id: r for r in runs if r.data.tags["role"] == "child"}
    assert {r["mlflow_run_id"] for r in rows} == set(children)
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    for row in rows:
        child = children[row["mlflow_run_id"]]
        assert child.info.status == "FINISHED" and child.data.metrics["energy"] == pytest.approx(row["energy"])
        history = client.get_metric_history(child.info.run_id, "loss")
        assert history and len(history) == len({m.step for m in history})  # nothing logged twice


def small(problem: str, **overrides) -> TrainConfig:
    """A small configuration of `problem` for exact-comparison tests (float64, narrow, few points)."""
    base = {"problem": problem, "width": 24, "depth": 3, "dtype": "float64", "epochs": 200}
    if get_problem(problem).dim > 1:  # the boundary in equal shares on each edge
        base.update(batch=48, boundary_batch=40)
    else:
        base.update(batch=32)
    base.update(overrides)
    return TrainConfig(**base).resolve()


def frame(counts: dict[tuple[int, int | None], np.ndarray], problem: str = "double_well", epochs: int = 10_000, epsilon: float = 0.0) -> pd.DataFrame:
    """Rows as `load` gives them: one per (depth, i) configuration and seed."""
    rows = []
    for (depth, i), values in counts.items():
        for seed, t in enumerate(values):
            rows.append({"problem": problem, "depth": depth, "fourier": i, "epsilon": epsilon, "epochs": epochs, "width": 128,
                         "activation": "relu", "transitions": int(t), "bands": None, "transitions_per_period": None,
                         "energy": 0.01, "status": "ok", "seed": seed, "trial_id": f"d{depth}i{i}", "source": "",
                         "config_hash": f"d{depth}i{i}e{epsilon}n{epochs}"})
    out = pd.DataFrame(rows)
    out["fourier"] = out["fourier"].astype("Int64")
    out["fourier_label"] = out["fourier"].map(lambda i: "none" if pd.isna(i) else str(int(i)))
    for name in ("dim", "rho", "fourier_map", "lr", "penalty", "batch", "boundary_batch", "dtype"):
        out[name] = {"dim": 1, "rho": 0.1, "fourier_map": "sincos", "lr": 1e-4, "penalty": 500.0, "batch": 128, "boundary_batch": 2,
                     "dtype": "float32"}[name]
    out["resample"] = True
    return out


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket of these processes (ss -ltnp)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        owners = [(name, int(pid)) for name, pid in _users(line)]
        if any(pid in pids for _, pid in owners):
            found.append((parts[3], ",".join(name for name, _ in owners)))
    return found


def _users(line: str) -> list[tuple[str, str]]:
    return re.findall(r'\("([^"]+)",pid=(\d+)', line)


def process_tree(root: int) -> set[int]:
    """root and its descendants, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or host.startswith("127.")


_RAYS_OWN_PORTS = {6379, 8265, 10001, 52365, 8080}  # a port a local Ray may take for itself


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (none of Ray's own)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _RAYS_OWN_PORTS:
            return port


# The profiles table as versions 0.1 and 0.2 wrote it (layout 1 of drm.profiles): one row per node and seed.
PROFILES_LAYOUT_1 = pa.schema([("sweep", pa.string()), ("trial_id", pa.string()), ("seed", pa.int64()), ("x", pa.float32()),
                               ("y", pa.float32()), ("u", pa.float32()), ("du", pa.float32())])


def layout_1(sweep: str, trial_id: str, seeds: list[int], x: np.ndarray, y: np.ndarray | None, u: np.ndarray, du: np.ndarray) -> pa.Table:
    """A layout-1 profiles table: `x` (and `y`) one seed's nodes, `u` and `du` (K, nodes) in the same order."""
    K, n = len(seeds), x.size
    return pa.table({"sweep": [sweep] * n * K, "trial_id": [trial_id] * n * K, "seed": np.repeat(np.asarray(seeds), n),
                     "x": np.tile(x, K), "y": np.tile(y, K) if y is not None else pa.nulls(n * K, pa.float32()),
                     "u": np.asarray(u).reshape(-1), "du": np.asarray(du).reshape(-1)}).cast(PROFILES_LAYOUT_1)
