"""The stored profiles (drm.profiles): the grid a figure needs, every value one the measurement took,
x once per trial; a trial's tables within the storage budget per seed (README, INTERFACE.md); the
layout of 0.1 and 0.2 still read, to the same figures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import figures
from drm.measurement import measure
from drm.problems import get_problem
from drm.profiles import METADATA, Profiles, coarsened, read, stored
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.figures import drawn
from pipeline.rows import trial_tables
from pipeline.tables import TrialTables, write_trial
from tests.helpers import frame, layout_1, small

BUDGET = {"double_well": 50_000, "twin_branching": 200_000}  # bytes per seed beyond the weights (README: Storage)
LIMIT = {"double_well": (2_001,), "twin_branching": (129, 129)}


@pytest.mark.parametrize(("nodes", "limit", "kept"), [(20_001, 2_001, 2_001), (257, 129, 129), (101, 2_001, 101), (1_001, 129, 126)])
def test_the_grid_is_every_s_th_measurement_node_with_both_ends(nodes, limit, kept):
    """The sub-grid keeps both ends and takes every s-th node, s the smallest step dividing n − 1 that fits."""
    x = np.linspace(0, 1, nodes)
    u = np.sin(7 * x)[None] * np.arange(1, 3)[:, None]  # (2, n)
    grid = coarsened({"x": x}, u, 2 * u, limit)
    assert grid.u.shape == (2, kept) and grid.axes["x"][0] == 0 and grid.axes["x"][-1] == 1
    step = (nodes - 1) // (kept - 1)
    assert np.array_equal(grid.u, u[:, ::step]) and np.array_equal(grid.du, 2 * u[:, ::step])  # values the measurement took


def test_2d_keeps_the_row_major_field_and_both_axes():
    g = np.linspace(0, 1, 257)
    field = np.random.default_rng(0).normal(size=(3, 257, 257))  # (K, ny, nx)
    grid = coarsened({"x": g, "y": g}, field, -field, 129)
    table = stored(grid, [4, 5, 6], sweep="s", trial_id="t")
    back = read(table)
    assert table.num_rows == 3 and back.u.shape == (3, 129, 129) and back.two_d
    assert np.array_equal(back.u, field[:, ::2, ::2].astype(np.float32)) and np.array_equal(back.of(6)[1], -field[2, ::2, ::2].astype(np.float32))
    assert np.allclose(back.axes["y"], g[::2], atol=1e-15) and b'"y": [0.0, 1.0, 129]' in table.schema.metadata[METADATA]


def test_a_layout_1_table_reads_as_the_same_profiles():
    """0.1 and 0.2 wrote one row per node and seed, x (and y) repeated: read() gives the arrays layout 2 holds."""
    g = np.linspace(0, 1, 17, dtype=np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    field = np.random.default_rng(1).normal(size=(2, 17, 17)).astype(np.float32)
    old = read(layout_1("s", "t", [3, 9], xx.reshape(-1), yy.reshape(-1), field.reshape(2, -1), -field.reshape(2, -1)))
    new = read(stored(Profiles(np.array([3, 9]), {"x": g, "y": g}, field, -field), [3, 9], sweep="s", trial_id="t"))
    assert list(old.seeds) == list(new.seeds) == [3, 9]
    assert np.array_equal(old.u, new.u) and np.array_equal(old.du, new.du) and np.allclose(old.axes["x"], new.axes["x"])


def _trial(problem: str, seeds: list[int], tmp_path) -> tuple[TrialTables, Storage]:
    config = small(problem, epochs=5, width=16, dtype="float32")
    trainer = PackedTrainer(config, seeds=seeds)
    trainer.run()
    tables = trial_tables(trainer, measure(trainer.model, config), sweep="s", trial_id="t", wall_seconds=1.0, node="n")
    results = Storage(tmp_path / problem)
    write_trial(results, tables)
    return tables, results


@pytest.mark.parametrize("problem", list(BUDGET))
def test_a_seed_costs_at_most_its_budget_beyond_its_weights(problem, tmp_path):
    """One seed alone (the replicates file's overhead is not shared): its replicates, curves and profiles
    within 50 kB (1D) or 200 kB (2D); the profiles float32 on ≤ 2,001 nodes or ≤ 129², x once."""
    for seeds in ([0], [0, 1, 2, 3]):
        tables, results = _trial(problem, seeds, tmp_path / str(len(seeds)))
        size = sum(len(results.read_bytes(table, "t.parquet")) for table in ("replicates", "curves", "profiles"))
        assert size / len(seeds) <= BUDGET[problem], (problem, len(seeds), size)
        profiles = pq.read_table(results.path("profiles", "t.parquet"))
        assert profiles.num_rows == len(seeds) and "x" not in profiles.column_names  # one row per seed; the grid in the metadata
        assert profiles.schema.field("u").type.value_type == pa.float32()
        assert read(profiles).u.shape == (len(seeds), *LIMIT[problem])


@pytest.mark.parametrize("problem", list(BUDGET))
def test_an_old_folder_draws_the_figures_a_new_one_does(problem, tmp_path):
    """The same profiles written as 0.2 wrote them (layout 1) and as now: the analysis and the MLflow
    figures read both, and draw the same lines and fields."""
    tables, results = _trial(problem, [0, 1], tmp_path / "new")
    p = read(tables.profiles)
    if p.two_d:
        yy, xx = np.meshgrid(p.axes["y"], p.axes["x"], indexing="ij")
        x, y = xx.reshape(-1), yy.reshape(-1)
    else:
        x, y = p.axes["x"], None
    old = Storage(tmp_path / "old")
    write_trial(old, tables)
    old.write_table(layout_1("s", "t", [0, 1], x, y, p.u.reshape(2, -1), p.du.reshape(2, -1)), "profiles", "t.parquet")
    rows = frame({(3, 2): np.array([4, 4])}, problem=problem)
    rows["trial_id"], rows["seed"] = "t", [0, 1]
    drawn_from = {}
    for name, folder in (("new", results), ("old", old)):
        rows["source"] = folder.location
        fig = figures.profiles(rows, problem, ["problem", "depth"])
        drawn_from[name] = [np.asarray(a.get_array()) for a in fig.axes[0].images] or [line.get_ydata() for line in fig.axes[0].lines]
        assert set(drawn(setting="seed", table=folder.read_table("profiles", "t.parquet"), replicates=tables.replicates, title="t")) == {0, 1}
    assert len(drawn_from["new"]) and all(np.allclose(a, b) for a, b in zip(drawn_from["new"], drawn_from["old"]))
    assert get_problem(problem).domain.profile_nodes == LIMIT[problem][0]
