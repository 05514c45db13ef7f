"""The classical energy of a profile with T transitions, on grids refined until it settles.

`solve(problem, epsilon, transitions)` minimises one cell (drm.classical.cell) from a start with
the transition at the cell's end, doubles the grid (warm-started from the last) until the energy
changes by less than `TOLERANCE` of itself, and says whether the minimiser kept its T transitions
(the derivative along the axis keeps its sign inside the cell) and whether the cap on unknowns was
reached first (`capped`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drm.classical.cell import CellEnergy, CellGrid, SeparableCell, cell_grid, minimise
from drm.problems import Problem

TOLERANCE = 0.005  # the relative change between two grids at which the energy is taken
START_NODES = 32  # nodes per cell along the axis on the first grid (and across, in 2D)
MAX_NODES = {1: 65_536, 2: 1_024}  # per cell along (1D), and along and across (2D): the cap


@dataclass(frozen=True)
class CountEnergy:
    """The classical energy with `transitions` transitions."""

    transitions: int
    energy: float
    error: float  # |E_h − E_2h|: the change at the last refinement (absolute)
    grid: str  # the whole profile's nodes: "n" in 1D, "nx x ny" in 2D
    capped: bool  # the cap was reached before two grids agreed to TOLERANCE
    held: bool  # the minimiser kept its transitions (False: it lost them; its energy is a different count's)
    converged: bool = True  # Newton met its tolerance on the last grid (False: the energy is an upper bound of that grid's)


def _start(problem: Problem, grid: CellGrid, previous: tuple[CellGrid, np.ndarray] | None) -> np.ndarray:
    """The unknowns on `grid`: interpolated from the last grid's minimiser, or a first guess (u rising
    with slope 1 to the transition; in 2D times a wall layer one period wide)."""
    if problem.dim == 1:
        if previous is None:
            return grid.along[1:].copy()
        old, theta = previous
        return np.interp(grid.along[1:], old.along, np.r_[0.0, theta])
    m = len(grid.across) - 1
    if previous is None:
        period = 2 * grid.along[-1]
        return np.concatenate([np.tanh(grid.across[1:-1] / period), grid.along[1:]])
    old, theta = previous
    k = len(old.across) - 2  # φ's unknowns on the old grid (φ = 0 at the wall, 1 in the middle)
    phi = np.interp(grid.across[1:-1], old.across, np.r_[0.0, theta[:k], 1.0])
    z = np.interp(grid.along[1:], old.along, np.r_[0.0, theta[k:]])
    assert len(phi) == m - 1
    return np.concatenate([phi, z])


def _along(problem: Problem, grid: CellGrid, theta: np.ndarray) -> np.ndarray:
    """The profile along the axis (u in 1D, z in 2D), with its zero."""
    return np.r_[0.0, theta if problem.dim == 1 else theta[len(grid.across) - 2 :]]


def _held(problem: Problem, grid: CellGrid, theta: np.ndarray) -> bool:
    """Whether the profile rises from its zero to the transition without turning (a turn inside the
    cell is a transition more in each of its 2T images), and is not u ≡ 0."""
    profile = _along(problem, grid, theta)
    rise = np.diff(profile)
    return bool(profile[-1] > 0 and np.all(rise >= -1e-9 * abs(profile[-1])))


def _energy(problem: Problem, epsilon: float, grid: CellGrid) -> CellEnergy | SeparableCell:
    cell = CellEnergy(problem, epsilon, grid)
    return cell if problem.dim == 1 else SeparableCell(cell)


def _grid_label(problem: Problem, grid: CellGrid) -> str:
    n = 2 * grid.transitions * (len(grid.along) - 1) + 1
    return str(n) if problem.dim == 1 else f"{2 * (len(grid.across) - 1) + 1}x{n}"


def solve(problem: Problem, epsilon: float, transitions: int, tolerance: float = TOLERANCE) -> CountEnergy:
    """The classical energy of `problem` at ε with `transitions` transitions (≥ 1)."""
    if transitions < 1:
        raise ValueError(f"transitions: allowed 1 or more, not {transitions}")
    nodes, cap = START_NODES, MAX_NODES[problem.dim]
    previous: tuple[CellGrid, np.ndarray] | None = None
    last: float | None = None
    while True:
        grid = cell_grid(problem, transitions, nodes, nodes)
        solved = minimise(_energy(problem, epsilon, grid), _start(problem, grid, previous))
        previous = (grid, solved.theta)
        if not _held(problem, grid, solved.theta):  # it turned: no finer grid brings the transitions back
            return CountEnergy(transitions, solved.energy, float("nan"), _grid_label(problem, grid), False, False, solved.converged)
        if last is not None:
            error = abs(solved.energy - last)
            settled = error <= tolerance * abs(solved.energy) or error <= 1e-13
            if settled or 2 * nodes > cap:
                return CountEnergy(transitions, solved.energy, error, _grid_label(problem, grid), not settled, True, solved.converged)
        last = solved.energy
        nodes *= 2
