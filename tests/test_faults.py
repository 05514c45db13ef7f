"""A home that is read-only or full, before and during a run: found before the work, or the run ends
with one line, keeps what committed, leaves nothing half-written, and --resume finishes the rest.

As root, chmod does not make a folder unwritable: these tests mount small tmpfs file systems
(read-only, or a few MB that they then fill), which needs root's mount capability.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from drm.storage import Storage
from pipeline.reconcile import inspect
from pipeline.tables import COMPANIONS
from tests.helpers import drmfm, each_once, replicate_rows, start_sweep, wait_for, write_spec

pytestmark = pytest.mark.slow


def _mount(where: Path, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], check=True, capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    """Mount tmpfs folders under tmp_path; all are unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only tmpfs needs root (chmod does not bind root)")
    made: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        where = tmp_path / name
        _mount(where, *options)
        made.append(where)
        return where

    yield mount
    for where in reversed(made):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Fill a file system to the last byte; returns the filler."""
    filler = folder / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'filler2'}", "bs=1"], capture_output=True)  # the last partial block
    return filler


def _one_line(result, start: str) -> None:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(start), result.stdout + result.stderr


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_home_that_takes_no_writes_is_refused_before_any_work(tmp_path, mounts, fault):
    home = mounts("home", "ro", "size=4m") if fault == "read-only" else mounts("home", "size=256k")
    if fault == "full":
        _fill(home)
    spec = write_spec(tmp_path, name="nowrite", fixed={"width": 16, "epochs": 10}, space={"depth": [2]}, seeds=1)
    why = "Read-only file system" if fault == "read-only" else "No space left on device"
    _one_line(drmfm("sweep", str(spec), home=home, timeout=120), f"drmfm: error: home: {home} does not take writes ({why})")
    _one_line(drmfm("train", "--epochs", "10", "--width", "16", home=home, timeout=120), f"drmfm: error: home: {home} does not take writes ({why})")
    assert sorted(p.name for p in home.iterdir()) == ([] if fault == "read-only" else ["filler", "filler2"])


def _nothing_half_written(results: Path, seeds: int, leftovers: bool = False) -> None:
    """Every commit is whole; and (unless `leftovers`: a read-only folder keeps what it held until the
    next start cleans it) no temporary file and no table without its commit."""
    assert not inspect(Storage(results), seeds).invalid
    if leftovers:
        return
    assert not list(results.rglob("*.tmp")), list(results.rglob("*.tmp"))
    committed = {p.stem for p in (results / "replicates").glob("*.parquet")}
    for table, suffix in COMPANIONS:
        assert {p.name.removesuffix(suffix) for p in (results / table).glob(f"*{suffix}")} <= committed, table


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_home_that_fails_mid_run_ends_the_sweep_in_one_line_and_resume_finishes(tmp_path, mounts, fault):
    """Full: the whole home (tables, Tune's state, MLflow) on a tmpfs filled to the last byte once a
    trial has landed. Read-only: the tables' folder remounted read-only (a folder with files open
    for writing, as the MLflow store is, cannot be remounted)."""
    if fault == "full":
        home = mounts("home", "size=96m")
    else:
        home = tmp_path / "home"
        mounts("home/results", "size=96m")
    spec = write_spec(tmp_path, name="fault", fixed={"width": 32, "epochs": 1500}, space={"depth": [2, 3], "fourier": ["none", 2]},
                      seeds=2, checkpoint_every=500)
    results = home / "results" / "fault"
    driver = start_sweep(spec, home)
    try:
        wait_for(lambda: (results / "replicates").is_dir() and any((results / "replicates").glob("*.parquet")), 300, "a first trial landed")
        if fault == "full":
            _fill(home)
        else:
            _remount(home / "results", "ro")
        _, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 1, err
    assert "Traceback" not in err, err
    why = "No space left on device" if fault == "full" else "Read-only file system"
    last = err.strip().splitlines()[-1]
    assert last.startswith("drmfm: the sweep stopped early") and why in last and "--resume" in last, err
    landed = len(replicate_rows(home, "fault"))
    assert 0 < landed < 8
    _nothing_half_written(results, 2, leftovers=fault == "read-only")
    if fault == "full":
        (home / "filler").unlink()
        (home / "filler2").unlink()
    else:
        _remount(home / "results", "rw")
    resumed = drmfm("sweep", str(spec), "--resume", home=home, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    each_once(replicate_rows(home, "fault"), 4, 2)
    _nothing_half_written(results, 2)


def _remount(where: Path, mode: str) -> None:
    """Remount read-only or read-write (retried: a write in flight at that instant makes it busy)."""
    for _ in range(50):
        if subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"cannot remount {where} {mode}")
