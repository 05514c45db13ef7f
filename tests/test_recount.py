"""`drmfm recount`: from the stored weights, at a row's own τ and grid the stored counts come back
exactly; at other τ they are what counting the stored profile directly gives; the run's tables are
left as they were."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest

from drm.config import TrainConfig
from drm.counts import count_transitions
from drm.profiles import read
from drm.storage import Storage
from pipeline.recount import recount
from pipeline.trial import run_trial
from tests.helpers import drmfm

CONFIGS = {
    "1d": TrainConfig(problem="double_well_u2", width=16, epochs=300, fourier=2, lr=3e-3),
    "2d": TrainConfig(problem="twin_branching", width=16, epochs=150, fourier=2, epsilon=0.1 / 16, batch=48, boundary_batch=40, lr=3e-3),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trained(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "results" / "s"
    rows = run_trial(CONFIGS[request.param], [0, 1, 2], device="cpu", sweep="s", trial_id="t", results_dir=folder)
    return request.param, folder, rows.to_pylist()


def _table(folder) -> list[dict]:
    return pq.read_table(folder / "recount" / "s.parquet").to_pylist()


def test_at_a_row_s_own_threshold_and_grid_the_stored_counts_come_back_exactly(trained):
    kind, folder, stored = trained
    (where, n), = recount([str(folder)], None, None, None)
    assert n == 3 and where.endswith("recount/s.parquet")
    again = {r["seed"]: r for r in _table(folder)}
    for row in stored:
        mine = again[row["seed"]]
        assert mine["transition_threshold"] == row["transition_threshold"] and mine["count_grid"] == row["count_grid"]
        for column in ("transitions", "transitions_per_period", "transitions_wall", "bands"):
            assert mine[column] == row[column], (kind, column)
        for column in ("band_width_mean", "band_width_cv", "wavenumber", "lock_in", "branching_exponent"):  # the same lines' geometry
            expected = row[column]
            assert (mine[column] is None) if expected is None else mine[column] == pytest.approx(expected), (kind, column)


@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_at_another_threshold_the_counts_are_those_of_the_stored_profile_on_its_own_grid(trained, tau):
    """1D: the profile holds u_x on every 10th node of the counting grid (2,001 nodes), so the seeds are
    recounted on 2,001 nodes and compared with it. 2D: it holds u_y on 129² (every other node of the
    measurement grid), so the lines are recounted with 129 nodes and compared with its column x = 0.5.
    (Bands are counted on the 257² measurement grid, which the profile no longer holds: the first test
    shows them reproduced at the row's own τ.)"""
    kind, folder, _ = trained
    profiles = read(Storage(folder).read_table("profiles", "t.parquet"))
    grid = 2_001 if kind == "1d" else 129
    recount([str(folder)], [tau], grid, None)
    again = {r["seed"]: r for r in _table(folder)}
    for seed in profiles.seeds:
        du = profiles.of(seed)[1]
        assert again[seed]["transitions"] == count_transitions(du if kind == "1d" else du[:, 64], tau)  # x = 0.5 is column 64
        assert again[seed]["transition_threshold"] == tau and again[seed]["count_grid"] == grid


def test_the_command_writes_where_it_is_told_and_leaves_the_run_s_tables_alone(trained, tmp_path):
    kind, folder, _ = trained
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file() and "recount" not in p.parts}
    done = drmfm("recount", str(folder), "--threshold", "0.05", "--threshold", "0.3", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "out" / "s.parquet")
    assert table.num_rows == 6 and sorted(set(table.column("transition_threshold").to_pylist())) == [0.05, 0.3]
    assert table.schema.names == ["sweep", "trial_id", "seed", "transition_threshold", "count_grid", "transitions",
                                  "transitions_per_period", "transitions_wall", "bands", "band_width_mean", "band_width_cv",
                                  "wavenumber", "lock_in", "branching_exponent"]
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file() and "recount" not in p.parts}
    assert after == before


@pytest.mark.parametrize("args, field", [(["--threshold", "-1"], "threshold"), (["--threshold", "nan"], "threshold"),
                                         (["--grid", "2"], "grid")])
def test_bad_input_exits_2_with_one_line_before_any_work(trained, args, field):
    _, folder, _ = trained
    written = folder / "recount" / "s.parquet"
    before = written.stat().st_mtime_ns if written.exists() else None
    done = drmfm("recount", str(folder), *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"drmfm: error: {field}:"), done.stderr
    assert (written.stat().st_mtime_ns if written.exists() else None) == before  # a refused command wrote nothing
