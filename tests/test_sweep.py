"""Sweeps end to end: real Ray (local), real MLflow (SQLite), real Parquet, temporary homes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from analysis import _snapshot as snapshot
from drm.classical.judge import cache_folder
from drm.measurement import measure
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.spec import parse_spec
from pipeline.tables import read_replicates
from tests.helpers import REQUIRED, ROOT, drmfm, free_port, mlflow_runs, spawn, wait_for, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory):
    """A 2-trial sweep, run once through the command for the tests that read it."""
    home = tmp_path_factory.mktemp("home")
    spec = write_spec(home)
    result = drmfm("sweep", str(spec), home=home, timeout=600)
    return home, spec, result


def test_a_two_trial_sweep_lands_every_row_and_run(two_trials):
    home, _, result = two_trials
    assert result.returncode == 0, result.stderr
    last = [line for line in result.stderr.splitlines() if line.startswith("[2/2]")]
    assert last and "failed 0" in last[0] and "trial-steps/s" in last[0] and "ETA" in last[0]  # progress
    rate = float(last[0].split(" trial-steps/s")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert rate > 0  # 2 trials × 3 seeds × 300 steps over the elapsed time
    table = read_replicates(home / "results" / "two")
    assert table.num_rows == 2 * 3
    assert not [c.strip() for c in REQUIRED.split(",") if c.strip() not in table.column_names]
    read = []  # the sweep kept the analysis's index of the rows: analysing them reads no trial file
    indexed = snapshot.replicates(Storage(home / "results" / "two"), lambda store, name: read.append(name) or store.read_table("replicates", name))
    assert read == [] and sorted(zip(indexed["trial_id"].to_pylist(), indexed["seed"].to_pylist())) == sorted(
        zip(table["trial_id"].to_pylist(), table["seed"].to_pylist()))
    rows = table.to_pylist()
    assert len({(r["trial_id"], r["seed"]) for r in rows}) == 6
    assert {r["fourier"] for r in rows} == {None, 2} and all(r["status"] == "ok" for r in rows)
    # Judged where they landed, by the driver's recorder: P1 at ε = 0 has the optimum 0, so no relative gap.
    assert all(r["energy_reference"] == 0.0 and r["energy_gap"] is None and r["worse_than_trivial"] == (r["energy"] >= 1.0) for r in rows)
    assert (cache_folder(home) / "double_well").is_dir()  # the session's shared cache ($DRMFM_REFERENCES)
    runs = mlflow_runs(home, "two")
    parents = [r for r in runs if r.data.tags["role"] == "parent"]
    children = [r for r in runs if r.data.tags["role"] == "child"]
    assert len(parents) == 2 and len(children) == 6
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        assert {"energy", "transitions"} <= set(child.data.metrics)
        row = next(r for r in rows if r["mlflow_run_id"] == child.info.run_id)
        assert child.data.metrics["energy"] == pytest.approx(row["energy"])
        assert child.data.metrics["energy_reference"] == 0.0
        assert child.data.tags["mlflow.parentRunId"] == row["mlflow_parent_run_id"]
    assert "tables:" in result.stdout and "drmfm ui" in result.stdout


def test_an_existing_name_needs_resume_and_resume_needs_the_same_spec(two_trials, tmp_path):
    home, spec, _ = two_trials
    again = drmfm("sweep", str(spec), home=home)
    assert again.returncode == 2 and again.stderr.startswith("drmfm: error: name:")
    changed = write_spec(tmp_path, seeds=4)
    refused = drmfm("sweep", str(changed), "--resume", home=home)
    assert refused.returncode == 2 and "spec changed" in refused.stderr and len(refused.stderr.splitlines()) == 1
    status = drmfm("status", home=home)
    assert status.returncode == 0 and "two: 2/2 trials done, 0 failed" in status.stdout
    finished = drmfm("sweep", str(spec), "--resume", home=home, timeout=600)  # nothing left: nothing trained, nothing twice
    assert finished.returncode == 0, finished.stderr
    assert "two: 6 of 6 seed rows landed (2 configurations × 3 seeds): 6 ok" in finished.stderr
    assert "filled" not in finished.stderr  # no training, no share of it (it was once 26233%)
    assert read_replicates(home / "results" / "two").num_rows == 6


def test_the_ui_serves_the_sweep_runs(two_trials):
    home, _, _ = two_trials
    port = free_port()
    server = spawn(
        [sys.executable, "-m", "pipeline.cli", "ui", "--home", str(home), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=two", timeout=5) as r:
                    experiment = json.load(r)["experiment"]
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        body = json.dumps({"experiment_ids": [experiment["experiment_id"]], "max_results": 100}).encode()
        request = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            runs = json.load(r)["runs"]
        roles = [next(t["value"] for t in run["data"]["tags"] if t["key"] == "role") for run in runs]
        assert roles.count("parent") == 2 and roles.count("child") == 6
        child = next(run for run, role in zip(runs, roles) if role == "child")
        assert {"energy", "transitions"} <= {m["key"] for m in child["data"]["metrics"]}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.parametrize("spec", ["quickstart", "fig4", "fig9"])
def test_shipped_specs_run_in_quick_mode(tmp_path, spec):
    result = drmfm("sweep", str(ROOT / "sweeps" / f"{spec}.yaml"), "--quick", "--no-mlflow", home=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    quick = parse_spec(yaml.safe_load((ROOT / "sweeps" / f"{spec}.yaml").read_text())).with_quick()
    table = read_replicates(tmp_path / "results" / quick.name)
    assert table.num_rows == quick.num_trials * quick.seeds


def test_a_diverging_configuration_is_recorded_and_the_others_finish(tmp_path):
    spec = write_spec(tmp_path, name="boom", space={"lr": [1.0e-4, 1.0e4]}, fixed={"width": 32, "epochs": 200, "fourier": 2})
    result = drmfm("sweep", str(spec), "--no-mlflow", home=tmp_path, timeout=600)
    assert result.returncode == 1
    assert "diverged" in result.stderr.splitlines()[-1]
    rows = read_replicates(tmp_path / "results" / "boom").to_pylist()
    assert len(rows) == 6
    assert {r["status"] for r in rows if r["lr"] > 1} == {"diverged"}
    assert all(r["transitions"] is None and r["energy"] is None for r in rows if r["lr"] > 1)  # nothing measured
    assert {r["status"] for r in rows if r["lr"] < 1} == {"ok"}


def test_an_unreachable_tracking_server_costs_one_warning_and_no_row(tmp_path):
    spec = write_spec(tmp_path, name="offline")
    result = drmfm("sweep", str(spec), "--tracking-uri", "http://127.0.0.1:9", home=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0]
    assert read_replicates(tmp_path / "results" / "offline").num_rows == 6


def test_a_killed_trial_restarts_from_its_checkpoint_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    spec_path = write_spec(
        tmp_path, name="crash", fixed={"width": 64, "epochs": 3000, "dtype": "float64", "fourier": 2},
        space={"depth": [3]}, seeds=2, checkpoint_every=500,
    )
    trial_dirs = tmp_path / "ray" / "crash"
    driver = spawn(
        [sys.executable, "-m", "pipeline.cli", "sweep", str(spec_path), "--home", str(tmp_path), "--no-mlflow"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    wait_for(lambda: any(trial_dirs.glob("run_tune_trial*/checkpoint_000001")), 300, "a second checkpoint")
    worker = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True, text=True).stdout.split()
    assert worker, "no trial process to kill"
    for pid in worker:
        os.kill(int(pid), signal.SIGKILL)
    out, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err
    assert any(trial_dirs.glob("run_tune_trial*/error.txt"))  # the kill happened and was retried

    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    config = spec.trial_config({"depth": 3})
    torch.set_num_threads(1)  # as in the trial
    try:
        uninterrupted = PackedTrainer(config, [0, 1])
        uninterrupted.run()
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    expected = measure(uninterrupted.model, config)
    rows = read_replicates(tmp_path / "results" / "crash").to_pylist()
    assert [r["seed"] for r in rows] == [0, 1]
    np.testing.assert_allclose([r["energy"] for r in rows], expected.energy, rtol=1e-9)
    assert [r["transitions"] for r in rows] == expected.transitions.tolist()
    weights = torch.load(next((tmp_path / "results" / "crash" / "weights").glob("*.pt")))["state_dict"]
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(weights[name], value, rtol=1e-9, atol=1e-12)
    curves = pq.read_table(next((tmp_path / "results" / "crash" / "curves").glob("*.parquet")))
    assert curves.num_rows == 2 * len(uninterrupted.curves().steps)  # the history is whole, and once


def test_a_scheduler_stops_trials_and_they_are_recorded_stopped(tmp_path):
    spec = write_spec(
        tmp_path, name="asha", fixed={"width": 32, "epochs": 3000, "fourier": 2},
        space={"lr": [1.0e-5, 1.0e-4, 1.0e-3, 3.0e-3]}, seeds=2, checkpoint_every=500,
        scheduler={"type": "asha", "grace_period": 500, "reduction_factor": 2},
    )
    result = drmfm("sweep", str(spec), home=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = read_replicates(tmp_path / "results" / "asha").to_pylist()
    assert not (tmp_path / "results" / "asha" / ".staging").exists() or not any((tmp_path / "results" / "asha" / ".staging").iterdir())
    runs = mlflow_runs(tmp_path, "asha")
    assert all(r.info.status != "RUNNING" for r in runs)
    assert {r.info.status for r in runs if r.data.tags.get("status") == "stopped"} == {"KILLED"}
    assert len({r["trial_id"] for r in rows}) == 4 and len(rows) == 8  # every trial has its rows, once
    stopped = [r for r in rows if r["status"] == "stopped"]
    finished = [r for r in rows if r["status"] == "ok"]
    assert stopped and finished
    assert all(r["steps_done"] < 3000 for r in stopped) and all(r["steps_done"] == 3000 for r in finished)
    assert "stopped early by the scheduler" in result.stderr


def test_a_trial_whose_retries_are_spent_is_recorded_failed(tmp_path):
    spec = write_spec(
        tmp_path, name="lost", fixed={"width": 64, "epochs": 8000, "fourier": 2}, space={"depth": [3]},
        seeds=2, checkpoint_every=1000, max_failures=0,
    )
    driver = spawn(
        [sys.executable, "-m", "pipeline.cli", "sweep", str(spec), "--home", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    wait_for(lambda: any((tmp_path / "ray" / "lost").glob("run_tune_trial*/checkpoint_000000")), 300, "a checkpoint")
    for pid in subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 1 and "failed" in err.splitlines()[-1]
    summary = err.splitlines()[-1]  # the error's own line, not Ray's coloured repr
    assert summary.startswith("drmfm: 1 trial(s) failed: ActorDiedError: The actor died") and "\x1b[" not in summary
    rows = read_replicates(tmp_path / "results" / "lost").to_pylist()
    assert [r["status"] for r in rows] == ["failed", "failed"] and all(r["error"] for r in rows)
    assert all(r["energy"] is None and r["depth"] == 3 for r in rows)
    runs = mlflow_runs(tmp_path, "lost")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FAILED"}


@pytest.mark.parametrize("sampler", ["random", "tpe", "qmc", "gp"])
def test_every_sampler_runs_its_samples_within_the_space(tmp_path, sampler):
    spec = write_spec(
        tmp_path, name=f"s-{sampler}", fixed={"width": 16, "epochs": 100},
        space={"fourier": ["none", 1, 2], "depth": {"low": 2, "high": 4}, "lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
        seeds=2, search={"sampler": sampler, "num_samples": 3, "seed": 1},
        objective={"metric": ["energy", "transitions"], "mode": ["min", "max"], "agg": "mean"},
    )
    result = drmfm("sweep", str(spec), "--no-mlflow", home=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = read_replicates(tmp_path / "results" / f"s-{sampler}").to_pylist()
    assert len(rows) == 3 * 2 and len({r["trial_id"] for r in rows}) == 3
    assert all(2 <= r["depth"] <= 4 and 1e-4 <= r["lr"] <= 1e-2 and r["fourier"] in (None, 1, 2) for r in rows)


def test_a_packed_sweep_lands_the_rows_an_unpacked_one_does(tmp_path):
    """Frequencies packed into one trial (two packed models: without the map, and every i with it)."""
    fields = dict(fixed={"width": 16, "epochs": 300, "dtype": "float64"}, space={"depth": [2], "fourier": ["none", 1, 2]}, seeds=2)
    loose = drmfm("sweep", str(write_spec(tmp_path, name="loose", **fields)), home=tmp_path, timeout=600)
    packed = drmfm("sweep", str(write_spec(tmp_path, name="packed", pack=["fourier"], **fields)), home=tmp_path, timeout=600)
    assert loose.returncode == 0 and packed.returncode == 0, loose.stderr + packed.stderr
    assert "1 trials × 3 packed configurations" in packed.stderr
    want = {(r["config_hash"], r["seed"]): r for r in read_replicates(tmp_path / "results" / "loose").to_pylist()}
    got = {(r["config_hash"], r["seed"]): r for r in read_replicates(tmp_path / "results" / "packed").to_pylist()}
    assert set(got) == set(want) and len(got) == 6
    for key, row in got.items():
        assert row["status"] == "ok" and row["transitions"] == want[key]["transitions"]
        assert row["energy"] == pytest.approx(want[key]["energy"], rel=1e-8)
    assert {r["pack_size"] for r in got.values()} == {2, 4}  # the unmapped pack, and i = 1, 2 together
    assert len({r["trial_id"] for r in got.values()}) == 3 and all("-" in r["trial_id"] for r in got.values())
    runs = mlflow_runs(tmp_path, "packed")
    assert len(runs) == 3 + 6 and all(r.info.status == "FINISHED" for r in runs)


def test_a_killed_packed_trial_resumes_every_pack_where_it_was(tmp_path):
    """Killed while its second packed model trains (the first has landed): the retry lands the first
    again (replacing, not adding) and continues the second from its checkpoint."""
    spec_path = write_spec(
        tmp_path, name="crashpack", fixed={"width": 48, "epochs": 3000, "dtype": "float64", "depth": 3},
        space={"lr": [1e-4], "fourier": ["none", 1, 2]}, pack=["fourier"], seeds=2, checkpoint_every=600,
    )
    trial_dirs = tmp_path / "ray" / "crashpack"
    driver = spawn(
        [sys.executable, "-m", "pipeline.cli", "sweep", str(spec_path), "--home", str(tmp_path), "--no-mlflow"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    # Checkpoints 0-3 are the unmapped pack's; 4 and on the mapped pack's (i = 1 and 2 together).
    wait_for(lambda: any(trial_dirs.glob("run_tune_trial*/checkpoint_000005")), 300, "a checkpoint of the second pack")
    for pid in subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    out, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err
    assert any(trial_dirs.glob("run_tune_trial*/error.txt"))
    rows = read_replicates(tmp_path / "results" / "crashpack").to_pylist()
    assert len(rows) == 6 and len({(r["trial_id"], r["seed"]) for r in rows}) == 6
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    torch.set_num_threads(1)
    try:
        for config in spec.trial_configs({"lr": 1e-4}):
            alone = PackedTrainer(config, [0, 1])
            alone.run()
            expected = measure(alone.model, config)
            mine = sorted((r for r in rows if r["config_hash"] == config.config_hash()), key=lambda r: r["seed"])
            np.testing.assert_allclose([r["energy"] for r in mine], expected.energy, rtol=1e-9)
            assert [r["transitions"] for r in mine] == expected.transitions.tolist()
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
