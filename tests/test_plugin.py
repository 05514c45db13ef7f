"""A problem from outside the package (examples/plugin_problem), installed as a user would, works end to
end through the entry point alone: the contract suite, `drmfm problems`, train, a sweep on Ray, analyze."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import ROOT, drmfm, each_once, mlflow_whole, replicate_rows, write_spec

pytestmark = pytest.mark.slow
DISTRIBUTION = "drmfm-double-well-load"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The example installed into this environment (from a copy: the checkout stays clean), removed after."""
    source = tmp_path_factory.mktemp("plugin") / "plugin_problem"
    shutil.copytree(ROOT / "examples" / "plugin_problem", source)
    installed = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield "double_well_load"
    removed = _pip("uninstall", "-y", DISTRIBUTION)
    assert removed.returncode == 0, removed.stderr


def _contract(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_problems.py", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_the_plugin_keeps_the_problems_contract(plugin):
    run = _contract("-k", plugin)
    assert run.returncode == 0, run.stdout[-3000:]
    per_problem = len([line for line in _contract("--collect-only", "-k", "twin_branching").stdout.splitlines() if "::" in line])
    assert re.search(rf"(?m)^{per_problem} passed", run.stdout), run.stdout[-3000:]  # every contract test ran on it


def test_its_energy_is_the_closed_form_on_a_known_function(plugin):
    """u ≡ 0: I = ∫ 1 + (0.1 sin 2πx)² dx = 1 + 0.005, by the problem as drmfm loaded it."""
    code = ("import torch; from drm.problems import get_problem; from drm.measurement import quadrature_energy\n"
            "zero = lambda p: (torch.zeros(1, len(p), dtype=p.dtype), torch.zeros(1, len(p), 1, dtype=p.dtype), None)\n"
            f"print(float(quadrature_energy(get_problem({plugin!r}), 0.0, zero)[0]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == pytest.approx(1.005, rel=1e-9)


def test_problems_train_sweep_and_analyze_take_it(plugin, tmp_path):
    listed = drmfm("problems")
    assert listed.returncode == 0 and plugin in listed.stdout and "0.1 sin 2πx" in listed.stdout, listed.stdout

    home = tmp_path / "home"
    trained = drmfm("train", "--problem", plugin, "--epochs", "300", "--width", "16", "--seeds", "2", home=home)
    assert trained.returncode == 0, trained.stderr
    assert "energy" in trained.stdout and "bands" not in trained.stdout  # a 1D problem's columns

    spec = write_spec(tmp_path, name="load", problem=plugin, fixed={"width": 16, "epochs": 300}, space={"fourier": ["none", 2]}, seeds=2)
    swept = drmfm("sweep", str(spec), home=home, timeout=600)
    assert swept.returncode == 0, swept.stderr
    rows = replicate_rows(home, "load")
    each_once(rows, 2, 2)
    assert {r["problem"] for r in rows} == {plugin} and all(r["status"] == "ok" and r["energy"] > 0 for r in rows)
    mlflow_whole(home, "load", 2, 2)

    out = tmp_path / "analysis"
    analyzed = drmfm("analyze", str(home / "results" / "load"), "--out", str(out), home=None, timeout=600)
    assert analyzed.returncode == 0, analyzed.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["problem"]) == {plugin} and len(summary) == 2
    assert plugin in (out / "report.md").read_text()
