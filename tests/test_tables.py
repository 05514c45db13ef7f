"""Result tables: the INTERFACE columns, atomic files, a re-run trial replaces its rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from drm.profiles import read
from pipeline.tables import CURVES, PROFILES, read_replicates, replicates_schema
from pipeline.trial import run_trial
from tests.helpers import REQUIRED, small


def test_replicates_schema_has_every_required_column():
    names = set(replicates_schema().names)
    missing = [c.strip() for c in REQUIRED.split(",") if c.strip() not in names]
    assert not missing
    assert {"sweep", "trial_id", "seed", "step", "loss", "energy_mc", "lr"} <= set(CURVES.names)
    assert {"sweep", "trial_id", "seed", "u", "du"} <= set(PROFILES.names)


def _trial(tmp_path: Path, problem: str, **kw):
    config = small(problem, epochs=40, **kw)
    return config, run_trial(config, [0, 1], device="cpu", sweep="s", trial_id="t1", results_dir=tmp_path)


def test_a_1d_trial_lands_all_tables(tmp_path):
    config, rows = _trial(tmp_path, "double_well", fourier=2)
    table = read_replicates(tmp_path)
    assert table.num_rows == 2 and table.column("seed").to_pylist() == [0, 1]
    row = table.to_pylist()[0]
    assert row["fourier"] == 2 and row["dim"] == 1 and row["pack_size"] == 2 and row["status"] == "ok"
    assert row["transitions_per_period"] == row["transitions"] / 2  # 2^(2-1) periods
    assert row["bands"] is None and row["transitions_wall"] is None
    assert row["config_hash"] == config.config_hash()
    curves = pq.read_table(tmp_path / "curves" / "t1.parquet")
    assert curves.num_rows == 2 * len(set(curves.column("step").to_pylist()))
    profiles = read(pq.read_table(tmp_path / "profiles" / "t1.parquet"))
    assert profiles.u.shape == (2, 2_001)  # every 10th node of the measurement grid (drm.profiles)
    assert (tmp_path / "weights" / "t1.pt").exists()
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written files left


def test_a_2d_trial_has_bands_and_wall_counts(tmp_path):
    _, rows = _trial(tmp_path, "twin_branching", fourier=1)
    row = rows.to_pylist()[1]
    assert row["dim"] == 2 and row["bands"] is not None and row["transitions_wall"] is not None
    assert row["fourier"] == 1 and row["transitions_per_period"] is None
    profiles = read(pq.read_table(tmp_path / "profiles" / "t1.parquet"))
    assert profiles.u.shape == (2, 129, 129)  # every other node of the 257² measurement grid


def test_a_rerun_trial_replaces_its_rows(tmp_path):
    _trial(tmp_path, "double_well")
    _trial(tmp_path, "double_well")
    assert read_replicates(tmp_path).num_rows == 2


def test_a_metric_cannot_take_a_name_another_column_or_report_key_has():
    from drm.metrics import RESERVED, Metric, metric_names

    fixed = set(replicates_schema().names) - set(metric_names())
    assert fixed <= RESERVED  # every other column of the rows is reserved
    for name in ("status", "step", "loss", "seed", "not an identifier"):
        with pytest.raises(ValueError, match="allowed: an ASCII identifier"):
            Metric(name, float, "", lambda view: None)
    with pytest.raises(ValueError, match="cannot format a float"):
        Metric("fine_name", float, "", lambda view: None, shown="d")
