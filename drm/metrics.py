"""What a trial measures, each column declared once: its type, where it means something, how it is
computed from a trained pack, whether a sweep may optimise it and how the summary shows it.

The result schema, a spec's objective, Tune's reports, the MLflow metrics, summary.csv and the table
`drmfm train` prints all read this registry. The paper's columns are below; a package adds one
through the entry point group `drmfm.metrics` (naming a `Metric`), a notebook with `register_metric`.
Each is computed by `compute(view)` from a `drm.measurement.View`: per member (K,), or None where the
trial's configuration gives it no meaning (the column is then null).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import numpy as np

from drm.config import TrainConfig
from drm.counts import count_bands

if TYPE_CHECKING:
    from drm.measurement import View
    from drm.problems import Problem

GROUP = "drmfm.metrics"
# Names a metric may not take: the rows' other columns, and the keys Tune, MLflow and the summary
# already give a meaning (a metric named `status` or `step` would overwrite them).
RESERVED = frozenset({
    *(f.name for f in dataclasses.fields(TrainConfig)), "sweep", "trial_id", "seed", "dim", "device", "pack_size", "status", "error",
    "wall_seconds", "steps_per_second", "node", "mlflow_run_id", "mlflow_parent_run_id", "config_hash", "torch_version",
    "code_version", "finished_at", "diverged_step", "steps_done", "step_mode", "step", "n_ok", "diverged", "trained_seconds",
    "loss", "energy_mc", "energy_over_reference", "source", "fourier_label", "role",
})


def everywhere(problem: Problem) -> bool:
    return True


@dataclass(frozen=True)
class Metric:
    """One measured column of the replicates table (nullable)."""

    name: str
    kind: type  # int, float or bool: the column's type (int64, float64, bool)
    doc: str
    compute: Callable[[View], np.ndarray | None]
    applies: Callable[[Problem], bool] = everywhere  # the problems where it means something
    objective: bool = True  # whether a sweep's objective may name it
    summary: bool = False  # whether summary.csv gives its median per configuration (<name>_median; a bool's share, <name>_share)
    shown: str | None = None  # the format `drmfm train` prints it with (None: not printed)
    # Filled where the tables are written, from the row and the classical references (drm.classical.judge),
    # not from the trained pack: `compute` gives None in the trial.
    judged: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier() and self.name.isascii()) or self.name in RESERVED:
            raise ValueError(f"metric {self.name!r}: allowed: an ASCII identifier that no other column or report key has taken")
        if self.kind not in (int, float, bool):
            raise ValueError(f"metric {self.name!r}: kind must be int, float or bool, not {self.kind!r}")
        if self.shown is not None:
            try:
                format(self.kind(1), self.shown)
            except (ValueError, TypeError):
                raise ValueError(f"metric {self.name!r}: shown={self.shown!r} cannot format a {self.kind.__name__}") from None

    @property
    def summary_column(self) -> str:
        return f"{self.name}_share" if self.kind is bool else f"{self.name}_median"


def _at_landing(v: View) -> None:
    return None


def _referenced(problem: Problem) -> bool:
    return problem.mirror_symmetric


def _transitions(v: View) -> np.ndarray:
    return v.count(0.5)


SENSITIVITY_THRESHOLDS = (0.05, 0.3)  # the other hysteresis half-widths a count is checked at


def _tau_sensitive(v: View) -> np.ndarray:
    """Whether the count on the same derivative changes at τ = 0.05 or 0.3 (from the count at the row's τ)."""
    count = v.count(0.5)
    return np.any([v.count(0.5, tau) != count for tau in SENSITIVITY_THRESHOLDS], axis=0)


def _transitions_per_period(v: View) -> np.ndarray | None:
    c = v.pack.config
    if c.fourier is None or c.fourier_map != "sincos":
        return None
    # sin(2^i π x) has 2^(i-1) periods on [0, 1]; u inherits them.
    return v.count(0.5) / 2.0 ** (np.array([m.fourier for m in v.pack.configs]) - 1.0)


def _transitions_wall(v: View) -> np.ndarray:
    walls = np.stack([v.count(offset) for offset in v.problem.domain.wall_offsets])  # (lines, K)
    return np.median(walls, axis=0)


def _bands(v: View) -> np.ndarray:
    return count_bands(v.du, v.threshold)  # du (K, ny, nx)


def _band_widths(v: View) -> tuple[np.ndarray, np.ndarray]:
    from drm.geometry import width_statistics

    return width_statistics(v.interfaces(0.5))


def _wavenumber(v: View) -> np.ndarray:
    from drm.geometry import dominant_wavenumber

    return np.array([dominant_wavenumber(g, np.linspace(0.0, 1.0, len(g)))[0] for g in v.lines(0.5)])


def _lock_in(v: View) -> np.ndarray | None:
    """The dominant wavenumber over the map's, 2^(i−1) periods of sin(2^i π t) on [0, 1] (NaN: no map)."""
    i = np.array([np.nan if m.fourier is None else m.fourier for m in v.pack.configs], dtype=float)
    return None if np.isnan(i).all() else _wavenumber(v) / 2.0 ** (i - 1.0)


def _branching(v: View) -> np.ndarray:
    from drm.geometry import WALL_DISTANCES, branching_exponent

    counts = np.stack([0.5 * (v.count(d) + v.count(1.0 - d)) for d in WALL_DISTANCES])  # (distances, K)
    return branching_exponent(np.array(WALL_DISTANCES), counts)


def _symmetry(v: View) -> np.ndarray:
    from drm.geometry import symmetry_error

    return symmetry_error(v.u)


def _one_dimensional(problem: Problem) -> bool:
    return problem.dim == 1


def _with_walls(problem: Problem) -> bool:
    return bool(problem.domain.wall_offsets)


def _on_images(problem: Problem) -> bool:
    return problem.dim == 2


_PAPER = (
    Metric("energy", float, "I(u) with its ε term, without the penalty, by the trapezoid rule (refined to 0.1% where it can be)",
           lambda v: v.energy.value, shown=".5g"),
    Metric("energy_quadrature_error", float, "the energy's estimated quadrature error, |I_h − I_2h| on its grid (absolute)",
           lambda v: v.energy.error, objective=False, shown=".1e"),
    Metric("energy_grid", int, "nodes per axis of the grid the energy was taken on (the domain's cap when it was reached)",
           lambda v: v.energy.nodes, objective=False),
    Metric("boundary_l2", float, "RMS of u on ∂D", lambda v: v.boundary_rms(), shown=".2e"),
    Metric("loss_final", float, "the last Monte Carlo loss of training", lambda v: v.loss_final),
    Metric("transitions", int, "sign changes of the derivative along the oscillation axis (on the middle line in 2D), with a hysteresis band",
           _transitions, shown="d"),
    Metric("count_grid", int, "nodes of the counting grid (1D) or of each counting line (2D; bands on the measurement grid)",
           lambda v: v.count_grid, objective=False),
    Metric("count_frozen_step", int, "the first logged step from which the curves' count (on the curve grid) never changed",
           lambda v: v.frozen, objective=False),
    Metric("count_tau_sensitive", bool, "whether the transitions change at τ = 0.05 or 0.3 (the same derivative, the same line)",
           _tau_sensitive, objective=False, summary=True),
    Metric("transitions_per_period", float, "transitions per period of the sincos map, sin(2^i π x) having 2^(i-1) on [0, 1]",
           _transitions_per_period, applies=_one_dimensional, summary=True),
    Metric("transitions_wall", float, "median of the transitions on the lines at 0.05 and 0.95 (near the walls): may be a half-integer",
           _transitions_wall, applies=_with_walls, summary=True, shown=".1f"),
    Metric("bands", int, "4-connected components of du > τ plus those of du < −τ on the grid (du along the oscillation axis)",
           _bands, applies=_on_images, summary=True, shown="d"),
    Metric("band_width_mean", float, "mean width of the bands between consecutive interfaces on the middle line (null: under 2 interfaces)",
           lambda v: _band_widths(v)[0], objective=False, summary=True, shown=".3g"),
    Metric("band_width_cv", float, "the band widths' standard deviation over their mean (0: even bands)",
           lambda v: _band_widths(v)[1], objective=False, summary=True),
    Metric("wavenumber", float, "the dominant wavenumber of the derivative on the middle line (FFT; cycles per unit length)",
           _wavenumber, objective=False, summary=True),
    Metric("lock_in", float, "wavenumber over the map's, 2^(i−1) periods on [0, 1] (1: the network oscillates at the map's period)",
           _lock_in, objective=False, summary=True),
    Metric("branching_exponent", float, "−slope of log N(d) against log d, N(d) the interfaces on the lines at distance d from the walls "
           "(branching: 2/3; a laminate: 0)", _branching, applies=_with_walls, objective=False, summary=True, shown=".2f"),
    Metric("symmetry_error", float, "‖u(x, y) − u(1 − x, y)‖ / ‖u‖ on the measurement grid", _symmetry, applies=_on_images,
           objective=False, summary=True),
    Metric("energy_reference", float, "the best classical energy of the problem at the run's ε (drmfm reference); null where none exists",
           _at_landing, applies=_referenced, objective=False, judged=True),
    Metric("energy_reference_same_count", float, "the classical energy of a profile with the run's own transitions (null: none held)",
           _at_landing, applies=_referenced, objective=False, judged=True),
    Metric("energy_gap", float, "energy / energy_reference − 1; null where the optimum is 0 or does not exist (2D: may be < 0)",
           _at_landing, applies=_referenced, objective=False, summary=True, judged=True, shown=".3g"),
    Metric("worse_than_trivial", bool, "energy ≥ that of u ≡ 0", _at_landing, applies=_referenced, objective=False, summary=True,
           judged=True),
)


class _Metrics:
    """name -> Metric, in the order of the table's columns (the paper's first)."""

    def __init__(self, *builtin: Metric):
        self._by_name = {m.name: m for m in builtin}
        self._plugins_loaded = False

    def add(self, metric: Metric, origin: str) -> None:
        if not isinstance(metric, Metric):
            raise TypeError(f"{origin}: {metric!r} is not a drm.metrics.Metric")
        known = self._by_name.get(metric.name)
        if known is not None and known is not metric:
            raise ValueError(f"{origin}: metric {metric.name!r} is already registered")
        self._by_name[metric.name] = metric

    def all(self) -> list[Metric]:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for point in entry_points(group=GROUP):
                origin = f"entry point {point.name} = {point.value}"
                try:
                    self.add(point.load(), origin)
                except Exception as e:  # noqa: BLE001 - one broken package must not hide the other columns
                    print(f"drmfm: warning: {origin} ({GROUP}) was not loaded: {type(e).__name__}: {e}", file=sys.stderr)
        return list(self._by_name.values())


_REGISTRY = _Metrics(*_PAPER)


def metrics() -> list[Metric]:
    """Every measured column, in table order."""
    return _REGISTRY.all()


def metric_names() -> list[str]:
    return [m.name for m in metrics()]


def measured_for(problem: Problem) -> list[Metric]:
    """The columns that mean something for `problem`."""
    return [m for m in metrics() if m.applies(problem)]


def register_metric(metric: Metric) -> Metric:
    """Add a column to this process (a notebook's `drm.measure`). A sweep's Ray workers do not see it:
    for `drmfm` a package declares it in the entry point group `drmfm.metrics`."""
    _REGISTRY.add(metric, "register_metric")
    return metric
