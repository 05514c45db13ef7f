"""Band geometry (drm.geometry) on synthetic fields whose widths, branching, symmetry and period are known."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from drm.counts import count_transitions
from drm.geometry import WALL_DISTANCES, branching_exponent, dominant_wavenumber, interface_positions, symmetry_error, width_statistics
from tests.helpers import drmfm

X = np.linspace(0.0, 1.0, 20_001)


def square(interfaces: list[float]) -> np.ndarray:
    """+1 before the first interface, changing sign at each, with noise inside the band |g| < τ."""
    g = np.where(np.searchsorted(interfaces, X) % 2 == 0, 1.0, -1.0)
    return g + 0.05 * np.sin(977 * X)  # flicker well inside the hysteresis band


def test_interfaces_and_band_widths_are_where_they_were_put():
    placed = [0.1, 0.25, 0.45, 0.7, 0.8]
    (found,) = interface_positions(square(placed), 0.1, X)
    assert found == pytest.approx(placed, abs=X[1])
    mean, cv = width_statistics([found])
    widths = np.diff(placed)
    assert mean[0] == pytest.approx(widths.mean(), abs=2 * X[1]) and cv[0] == pytest.approx(widths.std() / widths.mean(), abs=1e-3)
    assert np.isnan(width_statistics(interface_positions(square([0.5]), 0.1, X))[0][0])  # one interface: no band between two


def test_a_dead_band_keeps_noise_from_making_interfaces():
    g = 0.08 * np.sin(2000 * X)  # all inside τ = 0.1
    assert len(interface_positions(g, 0.1, X)[0]) == 0


@pytest.mark.parametrize("cycles", [3.5, 8.0, 16.0])
def test_the_dominant_wavenumber_is_the_period_put_in(cycles):
    g = np.sign(np.sin(2 * np.pi * cycles * X + 0.3))
    assert dominant_wavenumber(g, X)[0] == pytest.approx(cycles, abs=1 / 8)


def lines(exponent: float, n: int = 8193) -> np.ndarray:
    """u_y on the lines x = d and 1 − d of a field whose local wavenumber grows like dist^(−exponent)."""
    y = np.linspace(0.0, 1.0, n)
    out = []
    for d in WALL_DISTANCES:
        k = 2.0 * (d / 0.5) ** (-exponent)  # cycles per unit length at distance d from the wall
        out.append([np.sin(2 * np.pi * k * y + 0.1), np.sin(2 * np.pi * k * y + 0.2)])
    return np.array(out)  # (distances, 2 walls, n)


@pytest.mark.parametrize("exponent", [2 / 3, 0.0, 0.4])
def test_the_branching_exponent_is_recovered(exponent):
    counts = count_transitions(lines(exponent), 0.1).mean(axis=1)  # N(d): the two walls' mean
    assert branching_exponent(np.array(WALL_DISTANCES), counts[:, None])[0] == pytest.approx(exponent, abs=0.05)


def test_too_few_lines_that_counted_give_no_exponent():
    counts = np.array([[4.0], [2.0], [0.0], [0.0], [0.0], [0.0]])
    assert np.isnan(branching_exponent(np.array(WALL_DISTANCES), counts)[0])


@pytest.mark.parametrize("defect", [0.0, 0.1, 0.5])
def test_a_known_symmetry_defect_is_measured(defect):
    """u = sin πx sin πy + a sin 2πx sin πy: the odd part is 2a sin 2πx sin πy, so the error is 2a / √(1 + a²)."""
    x = np.linspace(0.0, 1.0, 257)
    yy, xx = np.meshgrid(x, x, indexing="ij")
    u = (np.sin(np.pi * xx) + defect * np.sin(2 * np.pi * xx)) * np.sin(np.pi * yy)
    assert symmetry_error(u[None])[0] == pytest.approx(2 * defect / np.sqrt(1 + defect**2), abs=1e-3)


def test_short_training_rows_carry_the_geometry_where_it_is_defined(tmp_path):
    for problem, extra in (("twin_branching", ["--fourier", "2"]), ("double_well", ["--fourier", "3"])):
        result = drmfm("train", "--problem", problem, "--epochs", "100", "--width", "16", "--seeds", "2", "--no-mlflow", *extra,
                       home=tmp_path / problem)
        assert result.returncode == 0, result.stderr
        (folder,) = (tmp_path / problem / "results").iterdir()
        for r in pq.read_table(next((folder / "replicates").glob("*.parquet"))).to_pylist():
            assert (r["band_width_mean"] is not None) == (r["transitions"] >= 2)  # a band between two interfaces
            assert r["wavenumber"] is not None and r["wavenumber"] >= 0
            assert r["lock_in"] == pytest.approx(r["wavenumber"] / 2 ** (int(extra[1]) - 1))
            if problem == "twin_branching":
                assert 0 <= r["symmetry_error"] <= 2 and (r["branching_exponent"] is None or np.isfinite(r["branching_exponent"]))
            else:
                assert r["symmetry_error"] is None and r["branching_exponent"] is None
