"""`drmfm ui`: the MLflow UI over a home's store, on 127.0.0.1, opened on a sweep's runs.

One server worker and no job runner (MLflow's job runner serves its GenAI jobs, which a sweep
never submits): two processes, not thirteen, so that a busy machine still answers. The command
says when the UI answers, not when it was asked to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.run_names import VIEW_KEY, VIEW_TAG

READY_SECONDS = 180.0  # a cold start on a busy 2-core machine (imports, migrations) takes tens of seconds


class UiFailed(RuntimeError):
    """The server exited before it answered, or did not answer in time."""


def runs_url(base: str, experiment_id: str | None, view: bool = False) -> str:
    """The runs view of an experiment (the experiments list without one), in MLflow's model-training
    pages; `view`: with the columns the sweep chose (pipeline.run_names.runs_view)."""
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    shared = f"&viewStateShareKey={VIEW_KEY}" if view else ""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning{shared}"


def experiments(store: Path) -> dict[str, tuple[str, bool]]:
    """Experiment name -> (id, whether it has our runs view) of every active experiment in a SQLite store."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import _quiet

    _quiet()
    client = MlflowClient(f"sqlite:///{store.resolve()}")
    return {e.name: (e.experiment_id, VIEW_TAG in e.tags) for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)}


def sweep_url(store: Path, name: str | None, base: str) -> str:
    """The runs view of sweep `name` in `store` (the list of sweeps without one); BadInput naming
    the sweeps there when it has no such sweep."""
    from pipeline._cli_input import BadInput

    if name is None:
        return runs_url(base, None)
    known = {k: v for k, v in experiments(store).items() if k != "Default"}
    if name not in known:
        raise BadInput(f"name: no sweep {name!r} in {store}; allowed: {', '.join(sorted(known)) or 'none yet (run a sweep first)'}")
    return runs_url(base, *known[name])


def server_command(store: Path, artifacts: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{store.resolve()}",
        "--default-artifact-root", artifacts.resolve().as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--uvicorn-opts", "--no-access-log",
    ]


def serve(store: Path, artifacts: Path, port: int, url: str, say, ready_seconds: float = READY_SECONDS) -> int:
    """Run the server until it exits or this process is interrupted or terminated; its exit code."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(server_command(store, artifacts, port), env=env)

    def stop(signum, _frame) -> None:
        if server.poll() is None:
            server.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        _wait_ready(server, f"http://127.0.0.1:{port}/health", ready_seconds)
        say(f"MLflow UI ready: {url}  (Ctrl-C stops it)")
        return server.wait()
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        try:
            return server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            return server.wait()
    except UiFailed:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=15)
        raise


def _wait_ready(server: subprocess.Popen, health: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UiFailed(f"the MLflow server exited ({server.returncode}) before it answered; its messages are above")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise UiFailed(f"the MLflow server did not answer {health} within {seconds:.0f} s")
