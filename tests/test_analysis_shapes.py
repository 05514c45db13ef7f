"""`drmfm analyze` completes on any study a user can have: one configuration, one seed, one level of
any factor, 1D and 2D together, a configuration in which every seed diverged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.analyze import analyze
from drm.profiles import Profiles, stored
from drm.storage import Storage
from pipeline.tables import CURVES, TrialTables, conform, replicates_schema, write_trial

PROBLEMS = {"double_well": 1, "twin_branching": 2}


def study(folder, configurations: list[dict], seeds: int = 4, problem: str = "double_well", diverged: set[int] = frozenset(),
          rng: np.random.Generator | None = None) -> str:
    """A results folder as a sweep writes it: one trial per configuration (depth, fourier, epsilon,
    epochs; the paper's other settings), with curves and profiles; the configurations whose index
    is in `diverged` diverged in every seed."""
    rng = rng or np.random.default_rng(0)
    results = Storage(folder)
    dim = PROBLEMS[problem]
    for k, c in enumerate(configurations):
        config = {"depth": 3, "fourier": None, "epsilon": 0.0, "epochs": 1000, **c}
        trial = f"t{k}"
        bad = k in diverged
        mean = 1.0 if config["fourier"] is None else 2.0 ** config["fourier"]
        t = rng.poisson(mean, seeds)
        rows = [{"sweep": "s", "trial_id": trial, "seed": seed, "problem": problem, "dim": dim, "width": 128,
                 "activation": "relu" if dim == 1 else "tanh", "rho": 0.1, "fourier_map": "sincos" if dim == 1 else "x_sincos",
                 "penalty": 500.0, "lr": 1e-4, "batch": 128, "boundary_batch": 2, "dtype": "float32", **config,
                 "energy": None if bad else float(rng.uniform(0.001, 0.01)),
                 "transitions": None if bad else int(t[seed]),
                 "transitions_per_period": None if bad or config["fourier"] is None or dim == 2 else t[seed] / 2 ** (config["fourier"] - 1),
                 "bands": None if bad or dim == 1 else int(t[seed]) + 1,
                 "status": "diverged" if bad else "ok", "config_hash": trial} for seed in range(seeds)]
        steps = np.arange(10) * 100
        curves = conform(pa.table({"sweep": ["s"] * 10 * seeds, "trial_id": [trial] * 10 * seeds, "seed": np.repeat(np.arange(seeds), 10),
                           "step": np.tile(steps, seeds), "loss": rng.uniform(0.01, 1, 10 * seeds),
                           "energy_mc": rng.uniform(0.01, 1, 10 * seeds), "lr": np.full(10 * seeds, 1e-4)}), CURVES)
        if dim == 1:
            x = np.linspace(0, 1, 101)
            axes, u = {"x": x}, np.abs((x * 3) % 1 - 0.5)
            du = np.gradient(u, x)
        else:
            g = np.linspace(0, 1, 9)
            axes, u = {"x": g, "y": g}, np.sign(np.sin(4 * np.pi * g))[:, None] * np.ones(g.size)  # (ny, nx): bands along y
            du = u
        K = np.arange(seeds)
        profiles = stored(Profiles(K, axes, np.stack([u] * seeds), np.stack([du] * seeds)), list(K), sweep="s", trial_id=trial)
        write_trial(results, TrialTables(trial, pa.Table.from_pylist(rows, schema=replicates_schema()), curves, profiles, b""))
    return results.location


def _complete(out, configurations: int, problems: int = 1) -> str:
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == configurations
    assert {"term", "response", "within"} <= set(pd.read_csv(out / "effects.csv").columns)
    pd.read_csv(out / "reproduction.csv")
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) >= 4 * problems and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    report = (out / "report.md").read_text()
    assert all(f"figures/{f.name}" in report for f in figures)
    return report


STUDIES = {
    "a train folder (one configuration)": [{"depth": 5, "fourier": 2}],
    "one depth, i varies": [{"fourier": i} for i in (None, 1, 2, 3)],
    "one i, depth varies": [{"depth": d, "fourier": 2} for d in (3, 5, 7)],
    "one map frequency, epochs vary": [{"epochs": e} for e in (1000, 4000)],
}


@pytest.mark.parametrize("name", list(STUDIES))
def test_analyze_completes_whatever_varies(tmp_path, name):
    configurations = STUDIES[name]
    analyze([study(tmp_path / "r", configurations)], str(tmp_path / "out"))
    _complete(tmp_path / "out", len(configurations))


def test_analyze_completes_on_one_configuration_with_one_seed(tmp_path):
    folder = study(tmp_path / "r", [{"depth": 3}], seeds=1)
    analyze([folder], str(tmp_path / "out"))
    report = _complete(tmp_path / "out", 1)
    assert "1 runs" in report or "1 run" in report


def test_analyze_completes_on_1d_and_2d_together(tmp_path):
    one = study(tmp_path / "p1", [{"depth": d, "fourier": i} for d in (3, 5) for i in (None, 2)])
    two = study(tmp_path / "p3", [{"fourier": i, "epsilon": 0.1 / 16} for i in (1, 2)], problem="twin_branching")
    done = analyze([one, two], str(tmp_path / "out"))
    report = _complete(tmp_path / "out", 6, problems=2)
    assert set(done.summary["problem"]) == {"double_well", "twin_branching"}
    assert "### double_well" in report and "### twin_branching" in report


def test_analyze_completes_when_every_seed_of_a_configuration_diverged(tmp_path):
    folder = study(tmp_path / "r", [{"depth": d} for d in (3, 5, 7)], diverged={1})
    done = analyze([folder], str(tmp_path / "out"))
    report = _complete(tmp_path / "out", 3)
    lost = done.summary[done.summary["depth"] == 5].iloc[0]
    assert (lost["n"], lost["n_ok"], lost["diverged"]) == (4, 0, 4)
    assert "4 diverged" in report


def test_analyze_on_only_diverged_runs_says_so_in_one_line(tmp_path):
    from analysis.data import AnalysisError

    folder = study(tmp_path / "r", [{"depth": 3}], diverged={0})
    with pytest.raises(AnalysisError, match="no run with status ok"):
        analyze([folder], str(tmp_path / "out"))


def test_analyze_completes_on_a_real_train_folder(tmp_path):
    from tests.helpers import drmfm

    trained = drmfm("train", "--epochs", "40", "--seeds", "2", "--no-mlflow", home=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (folder,) = (tmp_path / "results").iterdir()
    done = drmfm("analyze", str(folder), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    _complete(tmp_path / "out", 1)
    # The counts logged through training, drawn (a synthetic folder without them draws none).
    assert (tmp_path / "out" / "figures" / "counts_through_training_double_well.png").stat().st_size > 10_000
