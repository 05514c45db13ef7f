"""Fitted effects of the swept factors on band counts and energies, and rank trend tests.

Counts get a regression with a log link, per problem and response, so each `estimate` of a count
response is a log rate ratio: exp(estimate) multiplies the expected count. The error model follows
the data:

- over-dispersed counts (the Cameron-Trivedi test, one-sided, p < 0.05): negative binomial (NB2)
  estimates with robust (sandwich) errors;
- otherwise quasi-Poisson: Poisson estimates with the variance scaled by the Pearson dispersion,
  floored at 1 (under-dispersed counts, such as seeds that agree exactly, keep Poisson's errors:
  a dispersion near 0 would turn round-off into significance).

Intervals and p-values use Student's t on the residual degrees of freedom.

**The map's lattice.** With the periodic 1D map (`sincos`) u repeats 2^(i-1) times on [0, 1], so a
count is T = m·2^(i-1), m the network's transitions per period: Var(T) = 4^(i-1)·Var(m), and a
single dispersion across i is wrong. The `transitions` fits weight those runs by 2^-(i-1) (the
variance of a Poisson m on that lattice), and `transitions_per_period` (m itself) is fitted among the
periodic runs, its p-values from a permutation test within the other factors' cells (m takes few
values): the factor 2 per step of i there is what the map imposes; m's `fourier_i` is what the
network adds beyond it.

**Where the claims live** (the `within` column; empty means all of the problem's runs):
- all runs: `fourier_on` (map at the lowest i vs none), `fourier_i` (per unit of i among runs with
  a map), `depth` (per hidden layer) or `depth=<d>` (contrasts to the shallowest), `fourier=<i>`
  (contrasts to the lowest i, so that the log-linear form of `fourier_i` is tested, not assumed),
  `epsilon_on` and `log_epsilon` (among ε > 0: a log-log slope), `log_epochs`, and `<factor>=<value>`
  for any other factor that varies;
- depth within map off and on (`map=none`, `map=<type>`): the depth hypothesis is about plain DRM;
- two map types are never pooled into one `fourier_i`: then every term is fitted within each map
  type's runs (`map=<type>`), and `fourier_on` against the plain runs (`map=none or <type>`);
- ε within each i (`fourier=<i>`);
- `log_energy`: least squares of log I(u) (estimate: a log ratio of energies);
- `trivial` (P3/P4, whose u ≡ 0 has energy 1 and no band): a logistic fit of the share of runs stuck
  there (estimate: a log odds ratio), and the counts fitted given a non-trivial run (`trivial=no`).

Trend tests are Spearman correlations within each cell of the other factors (`within` names it).
Holm's adjustment runs over every p-value of a problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.data import FACTORS, varying
from analysis.design import factor_of, lattice, sampled
from analysis.models import fit_counts, fit_log_energy, fit_trivial, term_row
from analysis.stats import holm, spearman_trend
from drm.problems import PROBLEMS

COLUMNS = ["problem", "response", "term", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model", "within", "n"]


def trivial_state(problem: str) -> bool:
    """Whether u ≡ 0, which has no band, is a candidate minimiser of `problem` (drm.Problem.trivial_state)."""
    return problem in PROBLEMS and PROBLEMS[problem].trivial_state


def trend_tests(frame: pd.DataFrame, response: str, factor: str) -> list[dict]:
    """Spearman trend of `response` on `factor` within each cell of the other varying factors (a
    sampled range has no cells: its runs are pooled, as a grid's replicates are)."""
    groups = [c for c in varying(frame, FACTORS) if c not in ("problem", factor, "dim") and not sampled(frame, c)]
    if factor == "fourier":  # among runs with a map
        frame = frame[frame[factor].notna()]
    x_all = frame[factor].astype("float64").to_numpy()
    y_all = frame[response].astype("float64").to_numpy()
    rows = []
    label = "fourier_i" if factor == "fourier" else factor
    cells = frame.groupby(groups, dropna=False).indices.items() if groups else [((), np.arange(len(frame)))]
    for key, index in cells:
        key = key if isinstance(key, tuple) else (key,)
        x, y = x_all[index], y_all[index]
        if np.unique(x).size < 2:
            continue
        rho, low, high, p = spearman_trend(x, y)
        row = term_row(response, f"trend {label}", rho, low, high, p, "spearman (rank correlation; NaN: no variation)", len(index))
        row["within"] = ", ".join(f"{_short(g)}={_show(v)}" for g, v in zip(groups, key))
        rows.append(row)
    return rows


def _short(factor: str) -> str:
    return {"fourier_map": "map"}.get(factor, factor)


def _show(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Families

def _within(rows: Iterable[dict], within: str, keep=lambda term: True) -> list[dict]:
    """The rows whose term `keep` accepts, marked as fitted within `within` (joined to a cell they name)."""
    return [dict(r, within=_join(within, r.get("within", ""))) for r in rows if keep(r["term"])]


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def count_effects(data: pd.DataFrame, response: str, prefix: str = "") -> list[dict]:
    """The count fits of one response: all runs (per map type when there are several), depth within
    map on / off, i within each map type, ε within each i; trend tests beside them."""
    steps = lattice(data) if response == "transitions" else None
    mapped = data["fourier"].notna()
    maps = sorted(data.loc[mapped, "fourier_map"].dropna().unique())
    found: list[dict] = []

    def fits(part: pd.DataFrame, within: str, keep=lambda term: True) -> list[dict]:
        s = None if steps is None else steps[data.index.get_indexer(part.index)]
        rows = fit_counts(part, response, steps=s)
        if part["depth"].nunique() > 1:
            rows += fit_counts(part, response, depth="contrasts", steps=s, only="depth=")
        if part["fourier"].dropna().nunique() > 1:
            rows += fit_counts(part, response, fourier="contrasts", steps=s, only="fourier=")
        return _within(rows, within, keep)

    plain = ~mapped
    if len(maps) <= 1:
        found += fits(data, prefix)  # all runs
        if plain.any() and mapped.any():  # depth without the map and with it
            found += fits(data[plain], _join(prefix, "map=none"), keep=lambda t: factor_of(t) == "depth")
            found += fits(data[mapped], _join(prefix, f"map={maps[0]}"), keep=lambda t: factor_of(t) == "depth")
    else:  # two map types are never pooled into one fourier_i: each is fitted on its own runs
        if plain.any():
            found += fits(data[plain], _join(prefix, "map=none"))
        for kind in maps:
            found += fits(data[mapped & (data["fourier_map"] == kind)], _join(prefix, f"map={kind}"))
            if plain.any():
                found += fits(data[plain | (data["fourier_map"] == kind)], _join(prefix, f"map=none or {kind}"),
                              keep=lambda t: t == "fourier_on")
    # ε within each i (and map type).
    if data["epsilon"].nunique() > 1 and (data["fourier"].fillna(-1).nunique() > 1 or len(maps) > 1):
        for (kind, i), part in data.groupby([data["fourier_map"].where(mapped, "none"), data["fourier"].fillna(-1)], sort=True):
            if part["epsilon"].nunique() > 1:
                cell = f"fourier={'none' if i < 0 else int(i)}" if len(maps) <= 1 or kind == "none" else f"map={kind}, fourier={int(i)}"
                found += _within(fit_counts(part, response, steps=None if steps is None else steps[data.index.get_indexer(part.index)]),
                                 _join(prefix, cell), keep=lambda t: factor_of(t) == "epsilon")
    trends = trend_tests(data, response, "fourier") + trend_tests(data, response, "depth")
    if (data["epsilon"] > 0).any():
        trends += trend_tests(data, response, "epsilon")
    return found + _within(trends, prefix)


def per_period_effects(data: pd.DataFrame) -> list[dict]:
    """Transitions per period of the periodic map (the network's teeth per period), among its runs:
    what the network adds beyond the map's own ×2 per step of i. Permutation p-values."""
    periodic = data[data["transitions_per_period"].notna() & data["fourier"].notna()]
    found: list[dict] = []
    for kind, part in periodic.groupby("fourier_map", sort=True):
        rows = fit_counts(part, "transitions_per_period", permutation=True)
        if part["depth"].nunique() > 1:
            rows += fit_counts(part, "transitions_per_period", depth="contrasts", permutation=True, only="depth=")
        if part["fourier"].nunique() > 1:
            rows += fit_counts(part, "transitions_per_period", fourier="contrasts", permutation=True, only="fourier=")
        found += _within(rows, f"map={kind}")
        found += _within(trend_tests(part, "transitions_per_period", "fourier") + trend_tests(part, "transitions_per_period", "depth"), f"map={kind}")
    return found


def effects(ok: pd.DataFrame) -> pd.DataFrame:
    """Every fitted effect and trend test, per problem, with Holm-adjusted p-values per problem."""
    out = []
    for problem, rows in ok.groupby("problem"):
        rows = rows[rows["transitions"].notna()]
        found: list[dict] = []
        prefix = ""
        counted = rows
        if trivial_state(problem):
            trivial = (rows["transitions"].astype("float64") == 0).to_numpy()
            if trivial.any():
                found += _within(fit_trivial(rows, trivial), "")
                counted, prefix = rows[~trivial], "trivial=no"
        found += count_effects(counted, "transitions", prefix)
        if counted["bands"].notna().all() and len(counted):
            found += count_effects(counted, "bands", prefix)
        found += per_period_effects(counted)
        found += _within(fit_log_energy(rows), "")
        for r in found:
            r["problem"] = problem
            r.setdefault("within", "")
        p_holm = holm(np.array([r["p_value"] for r in found], dtype=float))
        for r, p in zip(found, p_holm):
            r["p_holm"] = p
        out += found
    return pd.DataFrame(out, columns=COLUMNS)
