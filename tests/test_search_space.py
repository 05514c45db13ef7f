"""The search space seen whole (analysis.search): the configurations' objective against the swept
parameters, and fANOVA importances for sampled spaces, checked on planted objectives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.report import _search
from analysis.search import MIN_POINTS, Space, importances, parallel_coordinates, points

SPEC = {
    "name": "drawn",
    "space": {"depth": {"low": 2, "high": 8, "step": None, "log": False, "integer": True},
              "lr": {"low": 1e-5, "high": 1e-2, "step": None, "log": True, "integer": False},
              "fourier": [None, 1, 2]},
    "search": {"sampler": "random"},
    "objective": {"metric": ["energy"], "mode": ["min"], "agg": "median"},
}


def _rows(n: int, objective, seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """`n` sampled configurations × `seeds` seeds; each seed's energy is objective(configuration) plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        config = {"depth": int(rng.integers(2, 9)), "lr": float(10 ** rng.uniform(-5, -2)), "fourier": [None, 1, 2][k % 3]}
        for s in range(seeds):
            energy = objective(config) + 0.01 * rng.standard_normal()
            rows.append({"sweep": "drawn", "config_hash": f"h{k}", "seed": s, "status": "ok", "energy": energy, **config})
    frame = pd.DataFrame(rows)
    frame["fourier"] = frame["fourier"].astype("Int64")  # as the tables are read: a nullable integer, <NA> for no map
    return frame


def test_the_parameter_the_objective_depends_on_is_the_important_one():
    space = Space.of(SPEC)
    table = points(_rows(40, lambda c: float(c["depth"])), space)
    assert len(table) == 40
    # Each configuration's objective is the spec's agg (median) over its ok seeds, computed here from the rows.
    rows = _rows(40, lambda c: float(c["depth"]))
    assert table.set_index("config_hash")["objective"].to_dict() == pytest.approx(rows.groupby("config_hash")["energy"].median().to_dict())
    found = importances(table, space)
    assert found.why_not is None and found.points == 40
    ranked = found.table.set_index("parameter")
    assert list(found.table["parameter"])[0] == "depth" and ranked.loc["depth", "importance"] > 0.8
    assert (ranked["low"] <= ranked["importance"]).all() and (ranked["importance"] <= ranked["high"]).all()
    assert ranked.loc["depth", "noise"] < 0.6 < ranked.loc["depth", "low"]  # shuffled, depth explains what any parameter would
    assert found.table["importance"].sum() == pytest.approx(1.0, abs=0.05)


def test_a_categorical_parameter_with_no_map_is_found_important_when_it_matters():
    space = Space.of(SPEC)
    found = importances(points(_rows(45, lambda c: 0.0 if c["fourier"] is None else 1.0, seed=1), space), space)
    assert list(found.table["parameter"])[0] == "fourier"


def test_no_importances_for_a_grid_one_parameter_or_too_few_configurations():
    grid = Space.of({**SPEC, "search": {"sampler": "grid"}})
    assert "grid" in importances(points(_rows(20, lambda c: c["depth"]), grid), grid).why_not
    one = Space.of({**SPEC, "space": {"depth": SPEC["space"]["depth"]}})
    assert "one parameter" in importances(points(_rows(20, lambda c: c["depth"]), one), one).why_not
    space = Space.of(SPEC)
    few = importances(points(_rows(MIN_POINTS - 1, lambda c: c["depth"]), space), space)
    assert few.table is None and f"fewer than {MIN_POINTS}" in few.why_not
    flat = _rows(12, lambda c: 4.0, seeds=1)
    flat["energy"] = 4.0  # every configuration gives the same count: nothing to share out (fANOVA would raise)
    assert "the same for every configuration" in importances(points(flat, space), space).why_not


def test_the_parallel_coordinates_draw_every_configuration_through_every_axis():
    space = Space.of(SPEC)
    rows = _rows(12, lambda c: float(c["depth"]))
    rows.loc[rows["config_hash"] == "h0", "status"] = "diverged"  # no ok seed: no objective, no line
    table = points(rows, space)
    assert np.isnan(table.set_index("config_hash").loc["h0", "objective"])
    figure = parallel_coordinates(table, space)
    (ax,) = figure.axes[:1]
    (collection,) = ax.collections  # one line per configuration with an objective, drawn as one collection
    lines = [path.vertices for path in collection.get_paths()]
    assert len(lines) == 11 and all(line.shape == (len(SPEC["space"]) + 1, 2) for line in lines)  # the parameters, then the objective
    assert all(np.array_equal(line[:, 0], np.arange(len(SPEC["space"]) + 1)) for line in lines)
    # No map (<NA> in the tables) sits on the axis at the position of `none`, the first choice: 0.
    heights = sorted(line[2, 1] for line in lines)
    assert heights[0] == 0.0 and set(np.round(heights, 6)) <= {0.0, 0.5, 1.0}


def test_the_report_gives_the_importances_it_computed_or_says_why_there_are_none():
    space = Space.of(SPEC)
    found = importances(points(_rows(40, lambda c: float(c["depth"])), space), space)
    text = "\n".join(_search([(space, found)]))
    assert "### drawn: importances for median energy (40 configurations)" in text
    depth = found.table.set_index("parameter").loc["depth"]
    assert f"| depth | {depth['importance']:.4g} | {depth['low']:.4g} | {depth['high']:.4g} | {depth['noise']:.4g} |" in text
    grid = Space.of({**SPEC, "search": {"sampler": "grid"}})
    none = importances(points(_rows(10, lambda c: 0.0), grid), grid)
    assert f"- `drawn` (grid, 10 configurations): no importances: {none.why_not}." in "\n".join(_search([(grid, none)]))


def test_a_large_design_is_read_from_a_random_subset_and_finds_the_same_parameter():
    """Past MAX_POINTS configurations the forests grow on a seeded random subset of MAX_POINTS (what
    keeps `drmfm analyze` of 10,000 configurations in seconds); the report says how many were used."""
    from analysis.search import MAX_POINTS

    space = Space.of(SPEC)
    table = points(_rows(MAX_POINTS + 300, lambda c: float(c["depth"]), seeds=1), space)
    found = importances(table, space)
    assert found.points == MAX_POINTS + 300 and found.used == MAX_POINTS
    ranked = found.table.set_index("parameter")
    assert list(found.table["parameter"])[0] == "depth" and ranked.loc["depth", "importance"] > 0.8
    assert ranked.loc["depth", "noise"] < 0.6 < ranked.loc["depth", "low"]
    assert f"a random {MAX_POINTS} of them" in "".join(_search([(space, found)]))
