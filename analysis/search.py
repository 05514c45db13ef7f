"""A sweep's search space seen whole: every configuration's objective against its swept parameters.

The space and the objective come from the spec the sweep saved beside its tables
(`results/<sweep>/spec.json`). One point per configuration: the objective is the spec's metric
aggregated (its `agg`) over the seeds that are ok. For a sampled space (random, tpe, gp, qmc) the
parameters' importances are Optuna's fANOVA over those points: each parameter's share of the
variance the main effects explain (the shares sum to 1 whatever the data, so even pure noise gets
shares). Each comes with the range over several forests and a noise level: the median share the
parameter got with the objective shuffled across the configurations, i.e. what it gets here when
the objective does not depend on it. These describe the sampled points; they are not a test, and
no claim is made from them. A grid's importances would only restate its design, which the fitted
effects already test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SAMPLED = ("random", "tpe", "gp", "qmc")
MIN_POINTS = 8  # fewer configurations than this give importances of noise: none are reported
FOREST_SEEDS = 5
MAX_POINTS = 1_000  # importances from a seeded random subset of this many configurations, at most
FOREST = {"n_trees": 16, "max_depth": 6}  # Optuna's default (64 trees of depth 64) takes 14 s a forest at 1,000 points; this about 0.5 s


@dataclass(frozen=True)
class Space:
    """One sweep's swept dimensions (spec order, as the spec writes them) and its objective."""

    sweep: str
    dimensions: dict[str, Any]  # name -> a list of choices, or a range {low, high, step, log, integer}
    sampler: str
    objective: str
    mode: str  # min or max
    agg: str

    @property
    def sampled(self) -> bool:
        return self.sampler in SAMPLED

    @classmethod
    def of(cls, spec: dict) -> Space:
        objective = spec.get("objective", {})
        return cls(
            sweep=spec["name"], dimensions=dict(spec["space"]), sampler=spec.get("search", {}).get("sampler", "grid"),
            objective=objective.get("metric", ["energy"])[0], mode=objective.get("mode", ["min"])[0], agg=objective.get("agg", "median"),
        )


def points(rows: pd.DataFrame, space: Space) -> pd.DataFrame:
    """One row per configuration of the sweep: its swept parameters and its objective (NaN when no seed is ok)."""
    mine = rows[rows["sweep"] == space.sweep]
    names = [n for n in space.dimensions if n in mine.columns]
    ok = mine[mine["status"] == "ok"]
    objective = ok.groupby("config_hash")[space.objective].agg(space.agg).rename("objective")
    first = mine.drop_duplicates("config_hash").set_index("config_hash")[names]
    return first.join(objective).reset_index()


def _positions(values: pd.Series, dimension: Any) -> tuple[np.ndarray, list[float], list[str]]:
    """A parameter's values on [0, 1] (choices evenly spaced in the spec's order; ranges linear or
    log as sampled), with tick positions and labels."""
    if isinstance(dimension, list):
        choices = list(dimension)
        index = {("none" if c is None else str(_plain(c))): k for k, c in enumerate(choices)}
        shown = values.map(lambda v: "none" if pd.isna(v) else str(_plain(v)))
        at = np.array([index.get(s, np.nan) for s in shown], dtype=float)
        scale = max(len(choices) - 1, 1)
        return at / scale, [k / scale for k in range(len(choices))], list(index)
    low, high, log = float(dimension["low"]), float(dimension["high"]), bool(dimension.get("log"))
    x = values.astype(float).to_numpy()
    f = np.log if log else (lambda v: v)
    span = (f(high) - f(low)) or 1.0
    return (f(x) - f(low)) / span, [0.0, 1.0], [f"{low:g}", f"{high:g}"]


def _plain(value: Any) -> Any:
    """A table's value as the spec writes it (2.0 read from a nullable column is the spec's 2)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return value


def parallel_coordinates(table: pd.DataFrame, space: Space):
    """Each configuration as a line through its parameters' axes and the objective's (the last), coloured by the objective."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    names = [n for n in space.dimensions if n in table.columns]
    scored = table[np.isfinite(table["objective"].astype(float))]
    if not names or scored.empty:
        return None
    fig = Figure(figsize=(max(5.0, 1.6 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    objective = scored["objective"].astype(float).to_numpy()
    low, high = objective.min(), objective.max() if objective.max() > objective.min() else objective.min() + 1
    norm = Normalize(low, high)
    axes = [_positions(scored[n], space.dimensions[n]) for n in names]
    axes.append(((objective - low) / (high - low), [0.0, 1.0], [f"{low:.4g}", f"{objective.max():.4g}"]))
    names = [*names, f"{space.agg} {space.objective}"]
    cmap = colormaps["viridis_r" if space.mode == "min" else "viridis"]  # the best configurations bright
    order = np.argsort(-objective if space.mode == "min" else objective)  # the best drawn last, on top
    positions = np.column_stack([a[0] for a in axes])[order]  # (configurations, axes), the best last
    xs = np.broadcast_to(np.arange(len(names), dtype=float), positions.shape)
    # One collection, not a line per configuration: 10,000 configurations draw in a second.
    lines = LineCollection(np.stack([xs, positions], axis=-1), colors=cmap(norm(objective[order])),
                           linewidths=1.2 if len(order) <= 200 else 0.5, alpha=0.8 if len(order) <= 200 else 0.4)
    ax.add_collection(lines)
    ax.set_ylim(-0.05, 1.05)
    for j, (_, ticks, labels) in enumerate(axes):
        ax.axvline(j, color="0.3", lw=0.8)
        for t, label in zip(ticks, labels):
            ax.annotate(label, (j, t), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(names) - 0.5)
    ax.set_title(f"{space.sweep}: {len(scored)} configurations", fontsize=10)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label(f"{space.agg} {space.objective} over the ok seeds ({space.mode} is better)")
    return fig


@dataclass
class Importances:
    """fANOVA importances of a sampled sweep's parameters, or why there are none."""

    table: pd.DataFrame | None  # parameter, importance (mean over forests), low, high (their range), noise
    why_not: str | None
    points: int  # the configurations with an objective
    used: int | None = None  # how many of them the forests were grown on (MAX_POINTS at most)


def importances(table: pd.DataFrame, space: Space) -> Importances:
    """Optuna's fANOVA importances over the configurations' objective (FOREST_SEEDS forests)."""
    scored = table[np.isfinite(table["objective"].astype(float))]
    names = [n for n in space.dimensions if n in table.columns]
    if not space.sampled:
        return Importances(None, f"the space is a {space.sampler}: its fitted effects say what each parameter does", len(scored))
    if len(names) < 2:
        return Importances(None, "one parameter is swept: its importance is 1 by construction", len(scored))
    if len(scored) < MIN_POINTS:
        return Importances(None, f"{len(scored)} configurations have an objective; fewer than {MIN_POINTS} give importances of noise", len(scored))
    objective = scored["objective"].astype(float).to_numpy()
    if np.ptp(objective) == 0:
        return Importances(None, "the objective is the same for every configuration: there is no variance to share out", len(scored))
    try:
        import optuna
    except ImportError:
        return Importances(None, "Optuna is not installed (pip install 'drmfm[sweep]')", len(scored))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng, total = np.random.default_rng(0), len(scored)
    if total > MAX_POINTS:  # a forest's cost grows faster than its points; a random subset keeps the design's spread
        scored = scored.iloc[np.sort(rng.choice(len(scored), MAX_POINTS, replace=False))]
        objective = scored["objective"].astype(float).to_numpy()
    params = [{n: _param(row[n], space.dimensions[n]) for n in names} for _, row in scored.iterrows()]
    distributions = {n: _distribution(optuna, space.dimensions[n]) for n in names}

    def study(values: np.ndarray):
        built = optuna.create_study(direction="minimize" if space.mode == "min" else "maximize")
        built.add_trials([optuna.trial.create_trial(params=p, distributions=distributions, value=float(v)) for p, v in zip(params, values)])
        return built

    def shares(of, seed: int) -> dict[str, float]:
        return optuna.importance.get_param_importances(of, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed, **FOREST))

    try:
        measured = study(objective)  # one study, a forest per seed
        frame = pd.DataFrame([shares(measured, s) for s in range(FOREST_SEEDS)])[names]
        noise = pd.DataFrame([shares(study(rng.permutation(objective)), s) for s in range(FOREST_SEEDS)])[names]
    except (RuntimeError, ValueError) as e:  # fANOVA refuses some degenerate designs (every tree without a split)
        return Importances(None, f"fANOVA could not be fitted ({e})", total)
    out = pd.DataFrame({"parameter": names, "importance": frame.mean().to_numpy(), "low": frame.min().to_numpy(),
                        "high": frame.max().to_numpy(), "noise": noise.median().to_numpy()})
    return Importances(out.sort_values("importance", ascending=False, ignore_index=True), None, total, len(scored))


def _distribution(optuna, dimension: Any):
    if isinstance(dimension, list):
        return optuna.distributions.CategoricalDistribution(tuple(dimension))
    low, high, log, step = dimension["low"], dimension["high"], bool(dimension.get("log")), dimension.get("step")
    if dimension.get("integer"):
        return optuna.distributions.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log, step=None if log else step)


def _param(value: Any, dimension: Any) -> Any:
    """A table's value as the distribution holds it (the spec's choice it equals, or the number)."""
    if isinstance(dimension, list):
        missing = pd.isna(value)
        for choice in dimension:
            if (choice is None and missing) or (choice is not None and not missing and _plain(value) == choice):
                return choice
        raise ValueError(f"{value!r} is not one of the spec's choices {dimension}")
    return int(value) if dimension.get("integer") else float(value)


def importance_figure(result: Importances, space: Space):
    from matplotlib.figure import Figure

    if result.table is None:
        return None
    t = result.table.iloc[::-1]
    fig = Figure(figsize=(6, 0.5 * len(t) + 1.6), layout="constrained")
    ax = fig.subplots()
    ax.barh(t["parameter"], t["importance"], color="C0")
    ax.errorbar(t["importance"], t["parameter"], xerr=[t["importance"] - t["low"], t["high"] - t["importance"]], fmt="none", color="k", lw=1)
    ax.scatter(t["noise"], t["parameter"], marker="|", s=200, color="C3", zorder=3, label="noise level (median share, objective shuffled)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel=f"share of the main-effect variance of {space.agg} {space.objective} (fANOVA)", xlim=(0, 1))
    sub = f" (a random {result.used} of them)" if result.used and result.used < result.points else ""
    ax.set_title(f"{space.sweep}: {result.points} configurations{sub}; bars: range over {FOREST_SEEDS} forests", fontsize=10)
    return fig
