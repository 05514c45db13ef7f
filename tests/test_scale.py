"""`benchmarks/scale.sh 200` as CI runs it (issue 16; BENCHMARKS.md records N = 10,000): a sampled
sweep of 200 tiny trials against a real `mlflow server` on loopback lands every trial × seed once in
the tables and in MLflow, within the storage budget per seed, and `drmfm analyze` reads it (twice:
the second time through its snapshot). Figures are printed and kept, never asserted as times."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_a_200_trial_sweep_lands_each_trial_and_seed_once_within_its_budget(tmp_path):
    out = tmp_path / "scale.json"
    done = subprocess.run([str(ROOT / "benchmarks" / "scale.sh"), "200", "--json", str(out), "--keep", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(out.read_text())
    print(done.stdout)
    assert found["trials_landed"] == 200 and found["seed_rows"] == 400
    assert found["each_trial_seed_once_in_tables"] and found["each_seed_once_in_mlflow"]
    per_seed = found["bytes_per_seed"]
    assert per_seed["replicates"] + per_seed["curves"] + per_seed["profiles"] <= 50_000  # README: Storage per seed (1D)
    assert found["tune_state_bytes"] < 200 * 20_000  # Tune is told the objective only: not 27 kB a trial
    assert found["analyze_seconds"] > 0 and found["analyze_again_seconds"] > 0
    assert (tmp_path / "work" / "home" / "results" / "scale" / ".analysis" / "replicates.parquet").is_file()
