"""Beyond one machine: a real two-node Ray cluster (two raylets on this machine, each with its own
working directory and home), the cluster config validated by Ray's own validator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.tables import read_replicates
from tests.helpers import ROOT, drmfm, free_port, mlflow_runs, spawn, write_spec

RAY = str(Path(sys.executable).parent / "ray")


# Ports a Ray node takes by default (GCS, dashboard, client server, dashboard agent, metrics):
# a head started on one of them fails (CI once drew 52365, the dashboard agent's).
def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, cmdline)
    return out


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _ray_start(*args: str, **kwargs) -> None:
    started = subprocess.run([RAY, "start", *args], capture_output=True, text=True, timeout=120, **kwargs)
    assert started.returncode == 0, f"ray start {' '.join(args)} failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """A head node and a worker node, 1 CPU each; the worker with its own cwd and $DRMFM_HOME."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    port = free_port()
    common = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000", "--disable-usage-stats"]
    worker_home, worker_cwd = tmp_path / "worker-home", tmp_path / "worker-cwd"
    worker_cwd.mkdir()
    try:
        _ray_start("--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--node-name=head-node", *common)
        _ray_start(f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--node-name=worker-node", *common,
                   cwd=worker_cwd, env={**os.environ, "DRMFM_HOME": str(worker_home)})
        yield f"127.0.0.1:{port}", worker_home, worker_cwd
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _worker_raylet() -> int:
    for pid, (_, cmdline) in _processes().items():
        if "/raylet" in cmdline.split(" ")[0] and "worker-node" in cmdline:
            return pid
    raise AssertionError("no raylet of the worker node")


def _nothing_written_under(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*")]


@pytest.fixture
def tracking_server(tmp_path):
    """A real `mlflow server` (SQL store, artifact store) on 127.0.0.1."""
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    server = spawn(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'runs.db'}", "--artifacts-destination", (store / "artifacts").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


@pytest.mark.slow
def test_a_sweep_spreads_over_two_nodes_and_lands_everything_where_the_driver_points(two_nodes, tracking_server, tmp_path):
    """Both nodes train from the start (the grid's pending trials are sized to the cluster's slots,
    pipeline.tuning.pending_trials), and every row and run lands where the driver points."""
    from mlflow.tracking import MlflowClient

    address, worker_home, worker_cwd = two_nodes
    home, storage = tmp_path / "driver-home", tmp_path / "shared-storage"
    spec = write_spec(tmp_path, name="spread", fixed={"width": 32, "epochs": 4000}, space={"fourier": ["none", 2], "depth": [2, 3]}, seeds=2)
    result = drmfm("sweep", str(spec), "--address", address, "--storage", str(storage), "--tracking-uri", tracking_server, home=home, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = read_replicates(storage / "results" / "spread").to_pylist()
    assert len(rows) == 8 and len({(r["trial_id"], r["seed"]) for r in rows}) == 8
    assert len({r["node"] for r in rows}) == 2  # both nodes trained trials…
    trained = {}  # node -> (start, end) of its first trial's training
    for r in rows:
        end = r["finished_at"].timestamp()
        trained[r["node"]] = min(trained.get(r["node"], (end, end)), (end - r["wall_seconds"], end))
    assert max(s for s, _ in trained.values()) < min(e for _, e in trained.values()), trained  # …at once, from the start
    client = MlflowClient(tracking_server)
    runs = client.search_runs([client.get_experiment_by_name("spread").experiment_id], max_results=100)
    assert len(runs) == 4 + 8 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.info.run_id for r in runs if r.data.tags["role"] == "child"} == {r["mlflow_run_id"] for r in rows}
    assert all({"energy", "transitions"} <= set(r.data.metrics) for r in runs if r.data.tags["role"] == "child")
    assert not (home / "results").exists() and not (home / "mlflow.db").exists()  # the driver's --storage and server only
    assert not _nothing_written_under(worker_home, worker_cwd)


@pytest.mark.slow
def test_a_killed_worker_node_costs_nothing(two_nodes, tmp_path):
    """The worker node's raylet is killed (-9) while a trial trains there: the trial is retried on the
    surviving node from its checkpoint, and every trial × seed lands once."""
    address, worker_home, worker_cwd = two_nodes
    home = tmp_path / "driver-home"
    spec = write_spec(tmp_path, name="spot", fixed={"width": 32, "depth": 2, "epochs": 12000}, space={"fourier": ["none", 2]},
                      seeds=2, checkpoint_every=1000, max_failures=3)
    driver = spawn([sys.executable, "-m", "pipeline.cli", "sweep", str(spec), "--address", address, "--home", str(home)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raylet = _worker_raylet()
    killed_trial = None
    deadline = time.time() + 300
    while killed_trial is None and time.time() < deadline and driver.poll() is None:
        time.sleep(1)
        on_worker = _descendants(raylet, _processes())
        for result_file in (home / "ray" / "spot").glob("run_tune_trial_*/result.json"):
            lines = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
            if lines and lines[-1]["pid"] in on_worker:  # it has reported (and checkpointed) on the worker node
                killed_trial = result_file.parent
                os.kill(raylet, signal.SIGKILL)
                break
    assert killed_trial is not None, "no trial checkpointed on the worker node in time"
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    rows = read_replicates(home / "results" / "spot").to_pylist()
    assert len(rows) == 4 and len({(r["trial_id"], r["seed"]) for r in rows}) == 4
    assert all(r["status"] == "ok" and r["steps_done"] == 12000 for r in rows)
    assert len({r["node"] for r in rows}) == 1  # both trials ended on the surviving node
    reports = [json.loads(line) for line in (killed_trial / "result.json").read_text().splitlines() if line.strip()]
    assert len({r["pid"] for r in reports}) == 2  # it trained in a second process after the kill…
    steps = [r["step"] for r in reports]
    assert steps[0] < 12000 and steps == sorted(set(steps))  # …resumed from its checkpoint: no step reported twice
    runs = mlflow_runs(home, "spot")
    assert len(runs) == 2 + 4 and all(r.info.status == "FINISHED" for r in runs)
    assert not _nothing_written_under(worker_home, worker_cwd)


def test_the_cluster_config_passes_rays_validator_and_binds_nothing_to_the_world():
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "ray_cluster.yaml").read_text()
    config = yaml.safe_load(text)
    validate_config(prepare_config(config))
    assert "0.0.0.0" not in text
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--host 127.0.0.1" in head
    pinned = next(line.split("==")[1] for line in (ROOT / "requirements/constraints.txt").read_text().splitlines() if line.startswith("ray=="))
    assert re.search(r"rayproject/ray:([\d.]+)", config["docker"]["image"]).group(1) == pinned
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0, "GPU": 0}
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):  # token auth on every node
        assert "RAY_AUTH_MODE=token" in next(c for c in commands if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"].values()
    broken = dict(config, head_node_type="nope")
    with pytest.raises(ValueError):
        validate_config(prepare_config(broken))


def test_the_kuberay_job_pins_ray_and_exposes_nothing():
    job = yaml.safe_load((ROOT / "deploy/rayjob.yaml").read_text())
    pinned = next(line.split("==")[1] for line in (ROOT / "requirements/constraints.txt").read_text().splitlines() if line.startswith("ray=="))
    cluster = job["spec"]["rayClusterSpec"]
    assert job["kind"] == "RayJob" and cluster["rayVersion"] == pinned
    assert f"rayproject/ray:{pinned}-" in (ROOT / "deploy/Dockerfile").read_text()
    assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP" and cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpu = cluster["workerGroupSpecs"][0]
    assert gpu["minReplicas"] == 0 and gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "drmfm sweep" in job["spec"]["entrypoint"] and "--address auto" in job["spec"]["entrypoint"]
    pods = [cluster["headGroupSpec"]["template"], gpu["template"], job["spec"]["submitterPodTemplate"]]
    for container in (c for pod in pods for c in pod["spec"]["containers"] if c["name"] != "mlflow"):
        env = {e["name"]: e for e in container["env"]}  # token auth in every Ray process, the token from a secret
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "drmfm-ray-token"


def test_the_slots_are_those_the_cluster_or_its_autoscaler_holds_and_fill_only_for_samplers_that_need_no_result(monkeypatch):
    """A trial's resources against the cluster's (and an autoscaler's maximum, where larger); the pending
    trials are sized to them for grid, random and qmc, while tpe and gp keep Tune's one (they learn
    from each result); a TUNE_MAX_PENDING_TRIALS_PG the user set wins."""
    import os

    from pipeline.spec import parse_spec
    from pipeline.tuning import pending_trials, trial_slots

    assert trial_slots({"cpu": 1}, {"CPU": 2.0}) == 2
    assert trial_slots({"cpu": 1}, {"CPU": 2.0}, {"CPU": 64, "GPU": 8}) == 64  # an autoscaler that may add nodes
    assert trial_slots({"cpu": 1, "gpu": 0.25}, {"CPU": 16.0, "GPU": 1.0}, {"CPU": 128, "GPU": 8}) == 32  # GPUs bind
    assert trial_slots({"cpu": 4}, {"CPU": 2.0}) == 1  # at least one
    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    base = {"name": "s", "problem": "double_well", "space": {"depth": [2, 3, 4]}, "seeds": 2}
    for sampler, want in (("grid", "3"), ("random", "8"), ("qmc", "8"), ("tpe", None), ("gp", None)):
        search = {"sampler": sampler} if sampler == "grid" else {"sampler": sampler, "num_samples": 40}
        spec = parse_spec({**base, "search": search})
        with pending_trials(spec, 8):
            assert os.environ.get("TUNE_MAX_PENDING_TRIALS_PG") == want, sampler  # a grid of 3 needs no more than 3
        assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "5")
    with pending_trials(parse_spec({**base, "search": {"sampler": "random", "num_samples": 40}}), 8):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "5"
