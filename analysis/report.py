"""report.md: the tables and figures in words a reader of the paper follows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import claims
from analysis.data import Results
from analysis.reproduction import missing_settings
from drm.problems import PROBLEMS


def table(frame: pd.DataFrame, columns: dict[str, str], limit: int = 60) -> str:
    """A markdown table of `columns` (name -> header); numbers to 4 significant digits."""
    if frame.empty:
        return "_(none)_\n"
    head = "| " + " | ".join(columns.values()) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for _, row in frame.head(limit).iterrows():
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    more = f"\n_{len(frame) - limit} more rows in the CSV._\n" if len(frame) > limit else "\n"
    return head + "\n".join(lines) + more


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _shown(summary: pd.DataFrame, column: str) -> pd.Series:
    """A summary column as table cells (dashes where no seed was kept)."""
    return summary.get(column, pd.Series(math.nan, index=summary.index, dtype=float)).map(_cell)


def _configuration(row: pd.Series) -> str:
    parts = [f"{row['problem']}, depth {row['depth']}", "no map" if row["fourier_label"] == "none" else f"i = {row['fourier_label']}"]
    if row["epsilon"] > 0:
        parts.append(f"ε = {row['epsilon']:.4g}")
    parts.append(f"{int(row['epochs']):,} epochs")
    return ", ".join(parts)


def _agreeing_seeds(summary: pd.DataFrame, limit: int = 12) -> str:
    """Configurations whose seeds all gave one count, said as such: no interval says it better."""
    if "transitions_all_equal" not in summary.columns:
        return ""
    same = summary[summary["transitions_all_equal"].fillna(False).astype(bool)]
    if same.empty:
        return ""
    several = summary[summary["n_ok"] > 1]
    listed = [f"{_configuration(r)}: all {int(r['n_ok'])} seeds gave {int(r['transitions_median'])}" for _, r in same.head(limit).iterrows()]
    more = f"; and {len(same) - limit} more (`transitions_all_equal` in `summary.csv`)" if len(same) > limit else ""
    head = ("**Every configuration's seeds agree exactly**: at these settings the count does not vary from seed to seed, so "
            "the fitted effects below compare exact counts, and their intervals (Poisson's, at least) bound rather than estimate "
            "seed-to-seed variation. " if len(same) == len(several) else "**Seeds that agree exactly.** ")
    return head + "; ".join(listed) + more + ".\n"


def render(results: Results, summary: pd.DataFrame, effects: pd.DataFrame, repro: pd.DataFrame, figures: dict[str, list[str]],
           searched: list | None = None) -> str:
    parts = [*_header(results), *_per_configuration(summary), *_reproduction(repro), *_effects(results, effects),
             *_reference_energies(summary), *_search(searched or []), *_figures(figures)]
    return "\n".join(parts)


def _header(results: Results) -> list[str]:
    counts = results.status_counts()
    excluded = {k: v for k, v in counts.items() if k != "ok" and v}
    return [
        "# Band counts: analysis\n",
        f"Results read: {', '.join(f'`{f}`' for f in results.folders)}.\n",
        f"**{len(results.rows)} runs** (configuration × seed): " + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ". "
        + (f"Left out of every statistic: {', '.join(f'{v} {k}' for k, v in excluded.items())} (listed per configuration in `summary.csv`). "
           if excluded else "No run was left out. ")
        + (f"{results.duplicates} repeated rows (the same configuration and seed read twice) were counted once. " if results.duplicates else "")
        + "Transitions are sign changes of u_x (1D) or of u_y along y at x = 0.5 (2D), counted with a hysteresis band "
        "so that noise near zero does not count; energies are by quadrature.\n",
    ]


def _per_configuration(summary: pd.DataFrame) -> list[str]:
    return [
        "## Per configuration\n",
        "Median and interquartile range of the per-seed counts, the mean with a 95% bootstrap interval, the median energy, "
        "and the share of seeds whose count changes when the hysteresis band τ = 0.1 becomes 0.05 or 0.3 (a count that "
        "depends on τ is a count of noise as much as of interfaces; `summary.csv` has the rest).\n",
        table(
            summary.assign(
                kept=summary["n_ok"].astype(str) + "/" + summary["n"].astype(str),
                t_iqr=_shown(summary, "transitions_q25") + "–" + _shown(summary, "transitions_q75"),
                t_mean=_shown(summary, "transitions_mean") + " (" + _shown(summary, "transitions_mean_ci_low")
                + "–" + _shown(summary, "transitions_mean_ci_high") + ")",
            ),
            {"problem": "problem", "depth": "depth", "fourier_label": "i", "epsilon": "ε", "epochs": "epochs", "kept": "ok/n",
             "transitions_median": "transitions median", "t_iqr": "IQR", "t_mean": "mean (95% CI)", "energy_median": "energy median",
             "count_tau_sensitive_share": "τ-sensitive seeds"},
        ),
        _agreeing_seeds(summary),
    ]


def _reproduction(repro: pd.DataFrame) -> list[str]:
    parts = [
        "## The paper's counts against ours\n",
        "Each of the paper's counts is one run. It **agrees** when it lies within the observed range (min–max) of our per-seed "
        "counts for the same setting. *p (pred.)* is a two-sided mid-p predictive p-value: how unusual the paper's count would be "
        "as one more of our seeds (with n seeds it is at least 2/(n + 1) unless the count lies outside our range, so a few seeds "
        "cannot call the paper an outlier). In 2D, *±1* says whether it lies within one of our range (the paper uses transitions "
        "and twin bands interchangeably: N interfaces, N + 1 bands). The share of our seeds that give exactly the paper's count "
        "has a Wilson 95% interval. A **shortened** row matches the paper's setting in everything but the epochs (ours / the "
        "paper's): a comparison to read with that in mind, not counted among the agreements.\n",
        table(repro.assign(epochs_shown=[f"{e:,} (paper {p:,}, shortened)" if s else f"{e:,}"
                                         for e, p, s in zip(repro["epochs"], repro["paper_epochs"], repro["shortened"])]),
              {"figure": "fig.", "problem": "problem", "depth": "depth", "fourier": "i", "epsilon": "ε", "epochs_shown": "epochs",
               "paper": "paper", "n": "seeds", "median": "our median", "min": "min", "max": "max", "agrees": "agrees",
               "within_one": "±1", "p_predictive": "p (pred.)", "exact_share": "exact share", "exact_ci_low": "CI low",
               "exact_ci_high": "CI high"}),
    ]
    missing = missing_settings(repro)
    if missing:
        parts.append(
            f"Figures with no matching setting in these results: {', '.join(missing)} (problem, depth, i and map type and ε must "
            "match, and width 128, lr 1e-4, λ = 500 and the problem's activation and batch, as in the paper).\n"
        )
    shortened = repro["shortened"].astype(bool)
    full, short = repro[~shortened], repro[shortened]
    if len(full):
        parts.append(f"{int(full['agrees'].sum())} of {len(full)} paper counts agree with our seeds at the paper's epochs.\n")
    if len(short):
        parts.append(f"Shortened runs: {int(short['agrees'].sum())} of {len(short)} comparisons at other epoch counts fall within our range.\n")
    return parts


def _effects(results: Results, effects: pd.DataFrame) -> list[str]:
    parts = [
        "## Fitted effects\n",
        "A count regression with a log link per problem (`effects.csv`): exp(estimate) multiplies the expected count. "
        "Errors are quasi-Poisson with the dispersion floored at 1, or negative binomial with robust errors when the counts are "
        "over-dispersed; intervals use Student's t on the residual degrees of freedom (the `model` column says which, with the "
        "dispersion and the df). With the periodic 1D map a count is a multiple of the map's periods, and its variance is "
        "modelled on that lattice. Each term is fitted where the claim lives (`within`): depth without the map and with it, "
        "i within each map type, ε within each i. p-values are Holm-adjusted within each problem, over every term and trend test.\n",
    ]
    for problem in sorted(results.ok["problem"].unique()):
        parts.append(f"### {problem} ({_label(problem)})\n")
        sentences = claims.sentences(effects, results.ok, problem)
        parts.append("\n".join(f"- {s}" for s in sentences) + "\n" if sentences else "_No factor varies enough to fit an effect._\n")
        mine = effects[effects["problem"] == problem]
        parts.append(table(mine, {"response": "response", "term": "term", "within": "within", "estimate": "estimate", "ci_low": "CI low",
                                  "ci_high": "CI high", "p_value": "p", "p_holm": "p (Holm)", "model": "model", "n": "n"}))
    return parts


def _label(problem: str) -> str:
    return PROBLEMS[problem].label if problem in PROBLEMS else problem


WITHIN = 0.05  # a configuration whose median seed is this close to the classical optimum reaches it


def _reference_energies(summary: pd.DataFrame) -> list[str]:
    """Each configuration against the classical references (drm.classical): its gap to the best, its
    energy over the classical profile with its own count, and its seeds worse than u ≡ 0."""
    if "energy_over_reference_median" not in summary.columns and "energy_gap_median" not in summary.columns:
        return []
    parts = []
    for name in summary["problem"].dropna().unique():
        problem = PROBLEMS.get(name)
        mine = summary[summary["problem"] == name]
        judged = [c for c in ("energy_gap_median", "energy_over_reference_median", "worse_than_trivial_share") if c in mine]
        mine = mine[mine[judged].notna().any(axis=1)] if judged else mine.iloc[:0]
        if problem is None or mine.empty:
            continue
        parts += [f"## {name} ({problem.label}): energies against the classical references\n",
                  "Each run is set against the classical minimiser of its problem at its ε (`drmfm reference`: finite differences, "
                  "refined to 0.5%): `energy_gap` = energy / best − 1 (none where the optimum is 0 or no minimiser exists"
                  + ("; here the reference is a laminate, an upper bound, so a solution that branches can go below it" if problem.dim == 2 else "")
                  + "), and energy / the classical profile with the run's own count (near 1: the best profile for its number of transitions)."
                  + (f" {problem.reference_note}" if problem.reference_note and (mine["epsilon"] == 0).any() else "") + "\n",
                  *_gap_claims(mine),
                  table(mine, {"depth": "depth", "fourier_label": "i", "epsilon": "ε", "epochs": "epochs", "transitions_median": "transitions median",
                               "energy_median": "energy median", "energy_reference_best": "classical best",
                               "energy_gap_median": "gap to the best (median)",
                               "energy_over_reference_median": "energy / same count (median)",
                               "worse_than_trivial_share": "share worse than u ≡ 0"})]
    return parts


def _gap_claims(mine: pd.DataFrame) -> list[str]:
    out = []
    if "energy_gap_median" in mine and mine["energy_gap_median"].notna().any():
        close = mine[mine["energy_gap_median"] <= WITHIN]
        listed = "; ".join(f"{_configuration(r)} ({r['energy_gap_median']:+.1%})" for _, r in close.iterrows())
        out.append(f"Within {WITHIN:.0%} of the classical optimum (median seed): {listed or 'none'}.\n")
    if "worse_than_trivial_share" in mine:
        worse = mine[mine["worse_than_trivial_share"] > 0]
        if len(worse):
            listed = "; ".join(f"{_configuration(r)} ({r['worse_than_trivial_share']:.0%} of seeds)" for _, r in worse.iterrows())
            out.append(f"Worse than u ≡ 0, whose energy the trivial state has without a single band: {listed}.\n")
    return out


def _search(searched: list) -> list[str]:
    """Per sweep that saved its spec: its parameters' fANOVA importances (sampled spaces), or why there are none."""
    if not searched:
        return []
    parts = ["## The search space\n",
             "Each configuration's objective (the spec's metric, aggregated over its ok seeds as the spec says) against "
             "its swept parameters: the parallel-coordinates figure below. For a sampled space, each parameter's share of the "
             "variance its main effect explains (Optuna's fANOVA). The shares sum to 1 whatever the data, so noise gets shares "
             "too: `noise` is the median share the parameter got with the objective shuffled across the configurations (5 "
             "shuffles), what it gets here when the objective does not depend on it. The lowest and highest are over "
             "independently grown forests (16 trees of depth 6 each, on at most 1,000 configurations), not an interval over "
             "configurations: the shares describe the points sampled, they are not a test, and the report draws no conclusion "
             "from them.\n"]
    for space, found in searched:
        if found.table is None:
            parts.append(f"- `{space.sweep}` ({space.sampler}, {found.points} configurations): no importances: {found.why_not}.\n")
            continue
        sub = f"; the forests grown on a random {found.used} of them" if found.used and found.used < found.points else ""
        parts.append(f"### {space.sweep}: importances for {space.agg} {space.objective} ({found.points} configurations{sub})\n")
        parts.append(table(found.table, {"parameter": "parameter", "importance": "share", "low": "lowest", "high": "highest",
                                         "noise": "noise"}))
    return parts


def _figures(figures: dict[str, list[str]]) -> list[str]:
    parts = ["## Figures\n", "Profiles show the median seed of each configuration (the first 8 configurations); learning curves, the first 12.\n"]
    for problem, names in figures.items():
        parts.append(f"### {problem}\n")
        parts.extend(f"![{name}](figures/{name})\n" for name in names)
    return parts
