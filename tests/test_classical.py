"""The classical reference solver (drm.classical) against closed forms, hand computations and an
independent solve of the whole interval."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from drm.classical import reference
from drm.classical.cell import CellEnergy, SeparableCell, cell_grid, minimise
from drm.classical.judge import CACHE_VARIABLE
from drm.classical.solve import TOLERANCE, solve
from drm.problems import get_problem
from tests.helpers import drmfm

P1, P2, P3 = (get_problem(n) for n in ("double_well", "double_well_u2", "twin_branching"))


@pytest.mark.parametrize(("problem", "epsilon", "shape"), [(P2, 0.02, (2, 12)), (P3, 0.02, (2, 7, 6))])
def test_the_sparse_hessian_is_autograds(problem, epsilon, shape):
    grid = cell_grid(problem, *shape)
    energy = CellEnergy(problem, epsilon, grid)
    u = np.random.default_rng(0).normal(size=grid.unknowns) * 0.3
    dense = torch.autograd.functional.hessian(energy, torch.from_numpy(u)).numpy()
    assert np.abs(energy.hessian(u).toarray() - dense).max() <= 1e-10 * np.abs(dense).max()


def test_the_separable_laminates_gradient_and_hessian_are_autograds():
    cell = SeparableCell(CellEnergy(P3, 0.02, cell_grid(P3, 2, 6, 5)))
    theta = torch.from_numpy(np.random.default_rng(1).normal(size=cell.unknowns))

    def energy(t):
        phi = torch.cat([t[: cell.m - 1], torch.ones(1, dtype=t.dtype)])
        return cell.energy(torch.outer(phi, t[cell.m - 1 :]).reshape(-1))

    _, grad = cell.value_and_grad(theta.numpy())
    assert grad == pytest.approx(torch.autograd.functional.jacobian(energy, theta).numpy(), rel=1e-10, abs=1e-10)
    dense = torch.autograd.functional.hessian(energy, theta).numpy()
    assert np.abs(cell.hessian(theta.numpy()) - dense).max() <= 1e-10 * np.abs(dense).max()


def test_p2_without_epsilon_reaches_the_zigzag_closed_form():
    """1/(12T²) is the zig-zag with |u_x| = 1. A slope s < 1 lowers it: by hand, the best constant slope
    gives 1/(12T²) − 1/(576T⁴), so the minimiser lies below that, and within 0.5% of 1/(12T²) from T = 3."""
    for t in range(1, 17):
        found = solve(P2, 0.0, t)
        zigzag = 1 / (12 * t**2)
        assert found.held and not found.capped
        assert found.energy <= zigzag - 1 / (576 * t**4) + 2 * found.error
        if t >= 3:
            assert found.energy == pytest.approx(zigzag, rel=TOLERANCE)


def test_p1_reaches_zero_and_each_kink_costs_8_epsilon_over_3():
    """At ε = 0 every zig-zag has energy 0; at ε > 0 a kink of u_x from −1 to 1 costs 2ε∫|v² − 1| dv = 8ε/3
    (Modica-Mortola), while kinks are far apart (1/(2T) ≫ ε)."""
    assert all(solve(P1, 0.0, t).energy == 0.0 for t in (1, 2, 5, 16))
    epsilon = 0.1 / 64
    for t in (1, 2, 4, 8):
        assert solve(P1, epsilon, t).energy == pytest.approx(t * 8 * epsilon / 3, rel=TOLERANCE)


def test_refining_the_grid_converges_at_second_order():
    """The energy on n, 2n, 4n, 8n nodes (h from ε/2 down): each difference about a quarter of the one before."""
    energies = []
    for n in (64, 128, 256, 512):
        grid = cell_grid(P2, 2, n)
        energies.append(minimise(CellEnergy(P2, 0.1 / 16, grid), grid.along[1:].copy()).energy)
    steps = np.abs(np.diff(energies))
    assert np.all(steps[1:] / steps[:-1] == pytest.approx(0.25, abs=0.04))


def test_the_mirrored_cell_equals_a_solve_of_the_whole_interval():
    """The whole [0, 1] (u = 0 at both ends, free u_xx there), its own discretisation, minimised by
    scipy's trust-region Newton with autograd's dense Hessian from a zig-zag with T = 3 kinks."""
    from scipy.optimize import minimize

    t, n, epsilon = 3, 32, 0.1 / 16  # n nodes per cell: 6n elements on [0, 1]
    h = 1 / (2 * t * n)

    def whole(v):
        u = torch.nn.functional.pad(v, (1, 1))
        du = torch.diff(u) / h
        w = ((du.square() - 1).square() + (0.5 * (u[1:] + u[:-1])).square()).sum() * h
        return w + epsilon**2 * (torch.diff(du) / h).square().sum() * h

    x = np.arange(1, 2 * t * n) * h
    zigzag = np.arcsin(np.sin(np.pi * t * x)) / (np.pi * t)  # slope ±1, zeros at j/T, kinks at (2j − 1)/(2T)
    result = minimize(lambda v: float(whole(torch.from_numpy(v))), zigzag, method="trust-exact",
                      jac=lambda v: torch.func.grad(whole)(torch.from_numpy(v)).numpy(),
                      hess=lambda v: torch.autograd.functional.hessian(whole, torch.from_numpy(v)).numpy(), options={"gtol": 1e-10})
    assert np.abs(result.jac).max() < 1e-6  # at the minimum to round-off (Hessian entries ~1e4: steps left ~1e-10)
    grid = cell_grid(P2, t, n)
    cell = minimise(CellEnergy(P2, epsilon, grid), grid.along[1:].copy())
    assert cell.energy == pytest.approx(result.fun, rel=1e-9)


@pytest.mark.parametrize(("epsilon", "t"), [(0.1 / 16, 4), (0.1 / 16, 8), (0.1 / 8, 4)])
def test_a_2d_laminate_has_its_hand_computed_energy(epsilon, t):
    """u = φ(x) z(y) with T straight interfaces. By hand, to first order in ε/h (h = 1/(2T), the band's
    amplitude): the interfaces T·8ε/3; the two wall layers, where φ = tanh(x √3/h) balances u_x² against
    (u_y² − 1)² (Modica-Mortola with ∫z² = h²/3): 2 · 4h/(3√3); less what the interfaces do not cost inside
    the layers, (2/3)(ε/h) of the layers (∫ 1 − g(tanh τ) dτ = 2/3, g the interface's cost at amplitude φ).
    The neglected terms are O((ε/h)² + h²): measured at most 0.9% here (1.3% at ε = 0.1/4,
    T = 2), so 1% is the stated tolerance."""
    h = 1 / (2 * t)
    layers = 8 * h / (3 * np.sqrt(3))
    hand = t * 8 * epsilon / 3 + layers * (1 - (2 / 3) * epsilon / h)
    found = solve(P3, epsilon, t)
    assert found.held and not found.capped
    assert found.energy == pytest.approx(hand, rel=0.01)


def test_without_epsilon_the_2d_laminates_energy_is_its_wall_layers():
    found = solve(P3, 0.0, 8)
    assert found.energy == pytest.approx(8 * (1 / 16) / (3 * np.sqrt(3)), rel=TOLERANCE)


def test_a_table_runs_until_the_energy_rises_names_its_best_and_is_cached(tmp_path):
    epsilon = 0.1 / 16
    table = reference(P2, epsilon, tmp_path)
    energies = {r["transitions"]: r["energy"] for r in table.rows}
    assert energies[0] == 1.0 == table.trivial  # u ≡ 0
    best = table.best
    assert best["energy"] == min(energies.values()) and best["transitions"] >= 1
    assert max(energies) >= best["transitions"] + 3 and energies[max(energies)] > 1.5 * best["energy"]
    cached = tmp_path / "double_well_u2" / f"epsilon={epsilon!r}.parquet"
    assert cached.exists()
    again = reference(P2, epsilon, tmp_path, counts=(30,))  # a count past the table's range is solved and added
    assert again.rows[: len(table.rows)] == table.rows and again.at(30) == pytest.approx(solve(P2, epsilon, 30).energy)
    cached.write_bytes(b"not parquet")  # a corrupt cache is solved again
    assert reference(P2, epsilon, tmp_path).rows == table.rows


def test_without_a_minimiser_the_table_runs_to_16_and_has_no_best(tmp_path):
    table = reference(P2, 0.0, tmp_path)
    assert [r["transitions"] for r in table.rows] == list(range(17)) and table.best is None
    assert table.at(4) == 1 / (12 * 16)  # the closed form, as the problem states it


def test_drmfm_reference_prints_the_table_as_json(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_VARIABLE)  # the default: the home's own references/
    result = drmfm("reference", "--problem", "double_well", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["problem"] == "double_well" and found["epsilon"] == 0.0
    assert found["best"] == {"transitions": 1, "energy": 0.0}
    assert [r["transitions"] for r in found["table"]] == list(range(17))
    assert all({"transitions", "energy", "grid"} <= set(r) for r in found["table"])
    assert (tmp_path / "references" / "double_well").is_dir()
    bad = drmfm("reference", "--problem", "double_well", "--epsilon", "-1", home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("drmfm: error: epsilon:")


def test_a_row_is_judged_against_the_best_and_its_own_count(tmp_path):
    from drm.classical.judge import References, judged

    epsilon = 0.1 / 16
    table = reference(P2, epsilon, tmp_path)
    best = table.best["energy"]
    row = judged({"energy": 1.5 * best, "transitions": 3}, table)
    assert row == {"energy_reference": best, "energy_reference_same_count": table.at(3), "energy_gap": pytest.approx(0.5),
                   "worse_than_trivial": False}
    assert judged({"energy": 1.2, "transitions": 0}, table)["worse_than_trivial"] is True  # u ≡ 0 has energy 1
    without = judged({"energy": 0.01, "transitions": 4}, reference(P2, 0.0, tmp_path))  # no minimiser at ε = 0
    assert without["energy_reference"] is None and without["energy_gap"] is None and without["energy_reference_same_count"] == 1 / 192
    zero = judged({"energy": 0.01, "transitions": 2}, reference(P1, 0.0, tmp_path))  # the optimum is 0: no relative gap
    assert zero["energy_reference"] == 0.0 and zero["energy_gap"] is None
    cached_only = References(tmp_path / "elsewhere", solve=False)  # analyze's: nothing cached, nothing solved
    assert cached_only.fill([{"problem": "double_well_u2", "epsilon": epsilon, "energy": 0.1, "transitions": 2}])[0].get("energy_gap") is None


def test_a_short_training_row_carries_the_classical_columns(tmp_path, monkeypatch):
    from tests.helpers import mlflow_runs

    monkeypatch.delenv(CACHE_VARIABLE)  # the default: the home's own references/

    epsilon = 0.1 / 16
    result = drmfm("train", "--problem", "double_well_u2", "--epsilon", str(epsilon), "--activation", "tanh", "--fourier", "1", "--epochs", "200",
                   "--seeds", "2",
                   home=tmp_path)
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "results").iterdir()
    rows = pq.read_table(next((folder / "replicates").glob("*.parquet"))).to_pylist()
    table = reference(P2, epsilon, tmp_path / "references", solve=False)  # what the train cached
    assert table is not None
    for r in rows:
        assert r["energy_reference"] == table.best["energy"] > 0
        assert r["energy_reference_same_count"] == table.at(r["transitions"])
        assert r["energy_gap"] == pytest.approx(r["energy"] / r["energy_reference"] - 1) and np.isfinite(r["energy_gap"])
        assert r["worse_than_trivial"] == (r["energy"] >= 1.0)
        assert f"{r['energy_gap']:.3g}" in result.stdout  # the table printed is the rows as they landed
    children = [run for run in mlflow_runs(tmp_path, "train") if run.data.tags.get("role") == "child"]
    assert len(children) == 2 and all("energy_gap" in run.data.metrics for run in children)


def test_train_without_scipy_leaves_the_classical_columns_null_and_says_so(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys; sys.modules['scipy'] = None; from pipeline.cli import main; "
            f"main(['train', '--epochs', '50', '--seeds', '1', '--no-mlflow', '--home', {str(tmp_path)!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "the classical references need scipy" in result.stderr
    (folder,) = (tmp_path / "results").iterdir()
    (row,) = pq.read_table(next((folder / "replicates").glob("*.parquet"))).to_pylist()
    assert row["energy"] is not None and all(row[c] is None for c in ("energy_reference", "energy_gap", "worse_than_trivial"))
