"""The tables are the truth: a resume repairs what is missing, one driver per sweep, a killed driver
lands nothing twice. Real Ray (local), real MLflow (SQLite), real Parquet."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import (
    ROOT,
    drmfm,
    each_once,
    listening,
    loopback,
    mlflow_runs,
    mlflow_whole,
    process_tree,
    replicate_rows,
    running_runs,
    spawn,
    start_sweep,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow


def test_resume_redoes_deleted_truncated_and_unreadable_state_and_status_counts_what_validates(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, name="mend", fixed={"width": 16, "epochs": 200, "fourier": 2}, space={"depth": [2, 3]}, seeds=2)
    first = drmfm("sweep", str(spec), home=home, timeout=600)
    assert first.returncode == 0, first.stderr
    replicates = home / "results" / "mend" / "replicates"
    deleted, truncated = sorted(replicates.glob("*.parquet"))
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:100])

    status = drmfm("status", home=home)
    assert "mend: 0/2 trials done, 0 failed, 1 unreadable" in status.stdout, status.stdout
    analyzed = drmfm("analyze", str(home / "results" / "mend"))
    assert analyzed.returncode == 2 and f"replicates/{truncated.name} is not a readable Parquet file" in analyzed.stderr

    resumed = drmfm("sweep", str(spec), "--resume", home=home, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"quarantined replicates/{truncated.name} (unreadable" in resumed.stderr
    assert "mend: 4 of 4 seed rows landed (2 configurations × 2 seeds): 4 ok" in resumed.stderr
    assert (home / "results" / "mend" / "quarantine" / "replicates" / f"{truncated.name}.bad").exists()
    each_once(replicate_rows(home, "mend"), 2, 2)
    mlflow_whole(home, "mend", 2, 2)
    assert "mend: 2/2 trials done, 0 failed, 2 started" in drmfm("status", home=home).stdout
    assert drmfm("analyze", str(home / "results" / "mend")).returncode == 0

    # Tune's own state unreadable (its newest experiment state truncated, as a full disk leaves it),
    # and a trial's rows gone: the tables and the spec stand in.
    newest = max((home / "ray" / "mend").glob("experiment_state-*.json"))
    newest.write_text(newest.read_text()[:50])
    gone = sorted(replicates.glob("*.parquet"))[0]
    gone.unlink()
    again = drmfm("sweep", str(spec), "--resume", home=home, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "saved state of mend cannot be read" in again.stderr and "every grid point without rows is trained" in again.stderr
    each_once(replicate_rows(home, "mend"), 2, 2)
    mlflow_whole(home, "mend", 2, 2)


def test_a_sampled_sweep_whose_tune_state_is_lost_trains_what_it_recorded_and_draws_what_it_did_not(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(
        tmp_path, name="drawn", fixed={"width": 16, "epochs": 100}, space={"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
        seeds=2, search={"sampler": "random", "num_samples": 3, "seed": 3},
    )
    assert drmfm("sweep", str(spec), "--no-mlflow", home=home, timeout=600).returncode == 0
    before = {r["config_hash"]: r["trial_id"] for r in replicate_rows(home, "drawn")}
    results, state = home / "results" / "drawn", home / "ray" / "drawn"

    def lose_state() -> None:
        for file in state.glob("experiment_state-*.json"):
            file.unlink()
        (state / "tuner.pkl").write_bytes(b"")

    lose_state()
    sorted((results / "replicates").glob("*.parquet"))[0].unlink()  # its configuration is in the ledger
    resumed = drmfm("sweep", str(spec), "--resume", "--no-mlflow", home=home, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "all 3 samples had been drawn; those without rows are trained" in resumed.stderr
    rows = replicate_rows(home, "drawn")
    each_once(rows, 3, 2)
    assert {r["config_hash"] for r in rows} == set(before)  # the recorded configurations, not new draws

    lose_state()
    forgotten = sorted(before)[0]  # a sample that left no trace: no rows, no ledger entry
    for file in (results / "trials").glob("*.json"):
        if forgotten in file.read_text():
            file.unlink()
    for trial_id in {r["trial_id"] for r in replicate_rows(home, "drawn") if r["config_hash"] == forgotten}:
        (results / "replicates" / f"{trial_id}.parquet").unlink()
    again = drmfm("sweep", str(spec), "--resume", "--no-mlflow", home=home, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 more samples are drawn" in again.stderr and "told of" not in again.stderr  # random needs no results to draw
    rows = replicate_rows(home, "drawn")
    each_once(rows, 3, 2)
    assert set(before) - {forgotten} <= {r["config_hash"] for r in rows}


def test_two_drivers_of_one_sweep_one_runs_and_its_ray_listens_on_loopback_only(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, name="twice", fixed={"width": 32, "epochs": 2000}, space={"fourier": ["none", 2]}, seeds=2)
    drivers = [start_sweep(spec, home), start_sweep(spec, home)]
    sockets: list[tuple[str, str]] = []
    while any(d.poll() is None for d in drivers):  # the sockets of whatever the drivers started, while they run
        for d in drivers:
            if d.poll() is None:
                sockets += listening(process_tree(d.pid))
        time.sleep(0.5)
    outputs = [d.communicate() for d in drivers]
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 2], [o[1] for o in outputs]
    refused = next(err for d, (_, err) in zip(drivers, outputs) if d.returncode == 2).strip().splitlines()
    assert len(refused) == 1 and refused[0].startswith("drmfm: error: lease: sweep 'twice' is held by a driver on host")
    assert "(pid " in refused[0] and " since " in refused[0]
    each_once(replicate_rows(home, "twice"), 2, 2)
    mlflow_whole(home, "twice", 2, 2)
    assert {owner for _, owner in sockets} >= {"gcs_server", "raylet"}, sockets  # the local Ray was seen
    assert [s for s in sockets if not loopback(s[0])] == [], sockets


def test_a_killed_driver_then_resume_lands_every_configuration_once_every_time(tmp_path):
    """kill -9 of the driver's process group after 2 of 6 trials landed, then --resume; three times."""
    spec = write_spec(tmp_path, name="killed", fixed={"width": 32, "epochs": 400}, space={"depth": [2, 3, 4], "fourier": ["none", 2]},
                      seeds=2, checkpoint_every=200)
    for attempt in range(3):
        home = tmp_path / f"home-{attempt}"
        replicates = home / "results" / "killed" / "replicates"
        driver = start_sweep(spec, home, output=False)
        wait_for(lambda: replicates.is_dir() and len(list(replicates.glob("*.parquet"))) >= 2, 300, "two trials landed")
        started = process_tree(driver.pid)
        before = {r["config_hash"]: (r["trial_id"], r["finished_at"], r["mlflow_run_id"]) for r in replicate_rows(home, "killed")}
        if attempt == 1:  # the driver alone: what it started must follow it
            os.kill(driver.pid, signal.SIGKILL)
        else:  # the driver's process group, as a job manager would
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        assert len(list(replicates.glob("*.parquet"))) < 6  # killed mid-sweep
        # What the driver started (the local Ray, its workers, the recorder) ends with it.
        wait_for(lambda: not [p for p in started if Path(f"/proc/{p}").exists() and _not_zombie(p)], 20, "the driver's processes to end")
        resumed = drmfm("sweep", str(spec), "--resume", home=home, timeout=900)
        assert resumed.returncode == 0, resumed.stderr
        rows = replicate_rows(home, "killed")
        each_once(rows, 6, 2)
        after = {r["config_hash"]: (r["trial_id"], r["finished_at"], r["mlflow_run_id"]) for r in rows}
        assert all(after[h] == landed for h, landed in before.items())  # what had landed stands, untouched
        mlflow_whole(home, "killed", 6, 2)
        curves = [pq.read_table(f) for f in (home / "results" / "killed" / "curves").glob("*.parquet")]
        assert len(curves) == 6 and all(c.num_rows == 2 * len(set(c.column("step").to_pylist())) for c in curves)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_driver_that_loses_its_lease_stops_and_leaves_the_sweep_to_the_holder(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, name="taken", fixed={"width": 32, "epochs": 4000}, space={"depth": [2, 3, 4], "fourier": ["none", 2]},
                      seeds=2, checkpoint_every=500)
    driver = start_sweep(spec, home)
    try:
        lease = home / "leases" / "taken.json"
        wait_for(lambda: (home / "results" / "taken" / "trials").is_dir(), 300, "a first trial")
        holder = {"token": "another", "host": "elsewhere", "pid": 1, "started": None, "since": "2026-12-01T00:00:00+00:00",
                  "renewed": time.time() + 3600}  # another host's driver took it (fresh for the next hour)
        lease.write_text(json.dumps(holder))
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert "the sweep stopped early" in last and "was taken by a driver on host elsewhere" in last, err
    assert json.loads(lease.read_text())["token"] == "another"  # the holder's lease, left as it is
    assert len(replicate_rows(home, "taken")) < 12
    assert not [r for r in mlflow_runs(home, "taken") if r.info.status == "KILLED"]  # the holder settles the runs, not this driver


def test_a_killed_train_leaves_no_running_run_for_the_next_command(tmp_path):
    home = tmp_path / "home"
    log = tmp_path / "train.log"
    with log.open("w") as sink:
        train = spawn(
            [sys.executable, "-m", "pipeline.cli", "train", "--epochs", "200000", "--width", "16", "--seeds", "2", "--home", str(home)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: running_runs(home, "train") == 3 or train.poll() is not None, 240, "the train's runs")
        assert train.poll() is None, f"the train ended early ({train.returncode}):\n{log.read_text()[-3000:]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(train.pid, signal.SIGKILL)
        train.wait(timeout=30)
    assert running_runs(home, "train") == 3  # left RUNNING by the killed process
    after = drmfm("train", "--epochs", "20", "--width", "16", home=home)
    assert after.returncode == 0, after.stderr
    runs = mlflow_runs(home, "train")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 2 + ["KILLED"] * 3


def test_a_sweep_of_many_fits_draws_each_sample_once_and_resumes_as_one(tmp_path, monkeypatch):
    """At most 2 trials a Tuner fit (DRMFM_TRIALS_PER_FIT; 1,000 by default): 3 random samples are drawn
    as fits of 2 and 1; a grid of 6 points runs as plain lists fit by fit, its driver killed in the
    second fit and resumed. Every configuration once, in the tables and in MLflow."""
    monkeypatch.setenv("DRMFM_TRIALS_PER_FIT", "2")
    home = tmp_path / "home"
    sampled = write_spec(tmp_path, name="fits", fixed={"width": 16, "epochs": 100}, space={"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
                         seeds=2, search={"sampler": "random", "num_samples": 3, "seed": 1})
    done = drmfm("sweep", str(sampled), home=home, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "the next 1 of the 3 samples are drawn" in done.stderr
    each_once(replicate_rows(home, "fits"), 3, 2)
    mlflow_whole(home, "fits", 3, 2)

    grid = write_spec(tmp_path, name="gridfits", fixed={"width": 32, "epochs": 300}, space={"depth": [2, 3, 4], "fourier": ["none", 2]},
                      seeds=2, checkpoint_every=100)
    replicates = home / "results" / "gridfits" / "replicates"
    driver = start_sweep(grid, home, output=False)
    wait_for(lambda: replicates.is_dir() and len(list(replicates.glob("*.parquet"))) >= 3, 300, "the second fit to land a trial")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert len(list(replicates.glob("*.parquet"))) < 6
    resumed = drmfm("sweep", str(grid), "--resume", home=home, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "grid point(s) without rows run" in resumed.stderr
    each_once(replicate_rows(home, "gridfits"), 6, 2)
    mlflow_whole(home, "gridfits", 6, 2)
