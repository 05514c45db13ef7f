"""A metric declared once, outside drmfm (a throwaway entry point of group `drmfm.metrics`), reaches every
place a metric goes without another module knowing it: the replicates table, the spec's objective, Tune's
reports, MLflow, summary.csv and the table `drmfm train` prints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from drm.profiles import read
from drm.storage import Storage
from tests.helpers import drmfm, mlflow_runs, replicate_rows, write_spec

pytestmark = pytest.mark.slow

METRIC = '''
import numpy as np
from drm.metrics import Metric

def _u_max(view):
    return np.abs(view.u).reshape(view.model.K, -1).max(axis=1)  # (K,)

U_MAX = Metric("u_max", float, "max |u| on the measurement grid", _u_max, summary=True, shown=".4g")
'''


@pytest.fixture
def throwaway_metric(tmp_path, monkeypatch):
    """A distribution on PYTHONPATH whose only content is the entry point (every process of the run sees it)."""
    site = tmp_path / "site"
    info = site / "throwaway_metric-0.0.dist-info"
    info.mkdir(parents=True)
    (site / "throwaway_metric.py").write_text(METRIC)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-metric\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[drmfm.metrics]\nu_max = throwaway_metric:U_MAX\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    return "u_max"


def test_a_metric_entry_reaches_the_tables_tune_mlflow_the_summary_and_train(throwaway_metric, tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path, name="extra", fixed={"width": 16, "epochs": 300}, space={"fourier": ["none", 2]}, seeds=2,
                      objective={"metric": throwaway_metric, "mode": "max"})  # the spec's objective knows it too
    swept = drmfm("sweep", str(spec), home=home, timeout=600)
    assert swept.returncode == 0, swept.stderr

    rows = replicate_rows(home, "extra")
    assert len(rows) == 4
    results = Storage(home / "results" / "extra")
    for trial in {r["trial_id"] for r in rows}:  # the column is max |u| on the measurement grid; the profiles hold every 10th node
        profile = read(results.read_table("profiles", f"{trial}.parquet"))
        for r in (r for r in rows if r["trial_id"] == trial):
            stored = np.abs(profile.of(r["seed"])[0]).max()
            assert stored <= r[throwaway_metric] * (1 + 1e-6) and r[throwaway_metric] == pytest.approx(stored, rel=1e-2)

    reports = [json.loads(line) for f in (home / "ray" / "extra").glob("*/result.json") for line in f.read_text().splitlines()]
    assert reports and all(np.isfinite(r[throwaway_metric]) for r in reports)  # what Tune saw, and optimised

    by_run = {r.info.run_id: r for r in mlflow_runs(home, "extra")}
    for r in rows:
        assert by_run[r["mlflow_run_id"]].data.metrics[throwaway_metric] == pytest.approx(r[throwaway_metric])
    parents = [run for run in by_run.values() if run.data.tags["role"] == "parent"]
    assert len(parents) == 2 and all(f"{throwaway_metric}_median" in p.data.metrics for p in parents)

    out = tmp_path / "analysis"
    analyzed = drmfm("analyze", str(home / "results" / "extra"), "--out", str(out), timeout=600)
    assert analyzed.returncode == 0, analyzed.stderr
    summary = pd.read_csv(out / "summary.csv")
    frame = pd.DataFrame(rows)
    medians = frame.groupby(frame["fourier"].fillna(-1))[throwaway_metric].median()
    assert sorted(summary[f"{throwaway_metric}_median"]) == pytest.approx(sorted(medians))

    trained = drmfm("train", "--epochs", "50", "--width", "16", "--seeds", "2", "--no-mlflow", home=tmp_path / "train")
    assert trained.returncode == 0, trained.stderr
    assert throwaway_metric in trained.stdout
