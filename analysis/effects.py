"""Fitted effects of the swept factors on band counts, and rank trend tests.

A count regression with a log link, per problem and response, so each `estimate` is a log rate
ratio: exp(estimate) multiplies the expected count. The error model follows the data:

- over-dispersed counts (the Cameron-Trivedi test, one-sided, p < 0.05): negative binomial (NB2)
  estimates with robust (sandwich) errors;
- otherwise quasi-Poisson: Poisson estimates with the variance scaled by the Pearson dispersion,
  floored at 1 (under-dispersed counts, such as seeds that agree exactly, keep Poisson's errors:
  a dispersion near 0 would turn round-off into significance).

Intervals and p-values use Student's t on the residual degrees of freedom.

Terms (INTERFACE.md): `fourier_on` (map at the lowest i vs none), `fourier_i` (per unit of i among
runs with a map), `depth` (per hidden layer) or `depth=<d>` (contrasts to the shallowest, a second
fit), `epsilon_on` and `log_epsilon` (among ε > 0: a log-log slope), `log_epochs`,
`fourier_map=<type>` (among runs with a map), and `<factor>=<value>` for any other factor that varies. Trend tests are Spearman correlations within
each group of the other factors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from analysis.data import FACTORS, varying
from analysis.stats import holm, spearman_trend

COLUMNS = ["problem", "response", "term", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model", "within", "n"]
OTHER = [f for f in FACTORS if f not in ("problem", "dim", "depth", "fourier", "epsilon", "epochs")]


def design(frame: pd.DataFrame, depth: str = "linear") -> pd.DataFrame:
    """The regressors of `frame` (no constant); only factors that vary get a term."""
    cols: dict[str, np.ndarray] = {}
    mapped = frame["fourier"].notna().to_numpy()
    i = frame["fourier"].astype("float64").to_numpy()
    if mapped.any() and not mapped.all():
        cols["fourier_on"] = mapped.astype(float)
    if mapped.any() and np.unique(i[mapped]).size > 1:
        cols["fourier_i"] = np.where(mapped, i - np.nanmin(i[mapped]), 0.0)
    d = frame["depth"].astype("float64").to_numpy()
    levels = np.unique(d)
    if levels.size > 1:
        if depth == "linear":
            cols["depth"] = d - levels[0]
        else:
            for level in levels[1:]:
                cols[f"depth={int(level)}"] = (d == level).astype(float)
    eps = frame["epsilon"].astype("float64").to_numpy()
    positive = eps > 0
    if positive.any() and not positive.all():
        cols["epsilon_on"] = positive.astype(float)
    if positive.any() and np.unique(eps[positive]).size > 1:
        cols["log_epsilon"] = np.where(positive, np.log(np.where(positive, eps, 1.0)) - np.log(eps[positive].min()), 0.0)
    epochs = frame["epochs"].astype("float64").to_numpy()
    if np.unique(epochs).size > 1:
        cols["log_epochs"] = np.log(epochs) - np.log(epochs.min())
    maps = frame["fourier_map"].astype("object").to_numpy()
    for level in sorted({m for m, on in zip(maps, mapped) if on and m is not None})[1:]:
        cols[f"fourier_map={level}"] = (mapped & (maps == level)).astype(float)  # among runs with a map
    for name in varying(frame, [f for f in OTHER if f != "fourier_map"]):
        values = frame[name].astype("object").where(frame[name].notna(), "none").astype(str).to_numpy()
        for level in sorted(set(values))[1:]:
            cols[f"{name}={level}"] = (values == level).astype(float)
    out = pd.DataFrame(cols, index=frame.index)
    return _independent(out)


def _independent(x: pd.DataFrame) -> pd.DataFrame:
    """Drop regressors that the constant and earlier regressors already span (a confounded design)."""
    kept: list[str] = []
    base = np.ones((len(x), 1))
    for name in x.columns:
        trial = np.column_stack([base, x[name].to_numpy()])
        if np.linalg.matrix_rank(trial) > base.shape[1]:
            base, kept = trial, [*kept, name]
    return x[kept]


def fit_counts(frame: pd.DataFrame, response: str, *, depth: str = "linear", offset: np.ndarray | None = None) -> list[dict]:
    """One row per term of a log-link count regression of `response` on the varying factors.

    Intervals and p-values use Student's t on the residual degrees of freedom (a handful of
    configurations × seeds is not a large sample), and the quasi-Poisson dispersion is floored at 1:
    counts that vary less than Poisson ones (seeds that agree exactly, a lattice) make the intervals
    no narrower than Poisson's, never a round-off artefact of zero width."""
    import statsmodels.api as sm
    from scipy import stats

    y = frame[response].astype("float64").to_numpy()
    x = design(frame, depth)
    n = len(y)
    if x.shape[1] == 0 or n - x.shape[1] - 1 < 2 or y.sum() == 0:
        return []
    exog = sm.add_constant(x.to_numpy(), has_constant="add")
    terms = list(x.columns)
    df = n - exog.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and perfect-fit notices: judged below
        poisson = sm.GLM(y, exog, family=sm.families.Poisson(), offset=offset).fit()
        mu = poisson.mu
        dispersion = poisson.pearson_chi2 / poisson.df_resid
        # Cameron & Trivedi (1990): regress ((y-mu)^2 - y)/mu on mu; alpha > 0 means over-dispersion.
        aux = sm.OLS(((y - mu) ** 2 - y) / mu, mu).fit()
        p_over = float(stats.norm.sf(aux.tvalues[0])) if np.isfinite(aux.tvalues[0]) else 1.0
        if p_over < 0.05 and dispersion > 1:
            # NB2 estimates, sandwich (HC0) errors: honest even where the NB variance is not quite right.
            nb = sm.NegativeBinomial(y, exog, offset=offset, loglike_method="nb2").fit(disp=0, maxiter=500, cov_type="HC0")
            params, bse = nb.params[1 : 1 + len(terms)], nb.bse[1 : 1 + len(terms)]
            model = f"negative_binomial, robust errors (alpha {nb.params[-1]:.3g}, dispersion {dispersion:.2f})"
        else:
            scale = max(1.0, float(dispersion)) if np.isfinite(dispersion) else 1.0
            quasi = sm.GLM(y, exog, family=sm.families.Poisson(), offset=offset).fit(scale=scale)
            params, bse = quasi.params[1:], quasi.bse[1:]
            model = f"quasi_poisson (dispersion {dispersion:.2f}" + (", floored at 1)" if dispersion < 1 else ")")
    model += f", t on {df} df"
    if depth != "linear":
        model += ", depth as contrasts"
    if offset is not None:
        model += ", offset log periods"
    t95 = float(stats.t.ppf(0.975, df))
    rows = []
    for term, b, se in zip(terms, params, bse):
        ok = np.isfinite(b) and np.isfinite(se) and se > 0
        rows.append(
            {
                "response": response,
                "term": term,
                "estimate": float(b),
                "ci_low": float(b - t95 * se) if ok else math.nan,
                "ci_high": float(b + t95 * se) if ok else math.nan,
                "p_value": float(2 * stats.t.sf(abs(b / se), df)) if ok else math.nan,
                "model": model,
                "n": n,
            }
        )
    return rows


def trend_tests(frame: pd.DataFrame, response: str, factor: str) -> list[dict]:
    """Spearman trend of `response` on `factor` within each group of the other varying factors."""
    groups = [c for c in varying(frame, FACTORS) if c not in ("problem", factor, "dim")]
    x_all = frame[factor].astype("float64")
    if factor == "fourier":  # among runs with a map
        frame, x_all = frame[x_all.notna()], x_all[x_all.notna()]
    rows = []
    label = "fourier_i" if factor == "fourier" else factor
    grouped = frame.groupby(groups, dropna=False) if groups else [((), frame)]
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        x = group[factor].astype("float64").to_numpy()
        y = group[response].astype("float64").to_numpy()
        if np.unique(x).size < 2:
            continue
        rho, low, high, p = spearman_trend(x, y)
        where = ", ".join(f"{g}={_show(v)}" for g, v in zip(groups, key))
        rows.append(
            {
                "response": response,
                "term": f"trend {label}" + (f" ({where})" if where else ""),
                "estimate": rho,
                "ci_low": low,
                "ci_high": high,
                "p_value": p,
                "model": "spearman (rank correlation; NaN: no variation)",
                "n": len(group),
            }
        )
    return rows


def _show(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def effects(ok: pd.DataFrame) -> pd.DataFrame:
    """Every fitted effect and trend test, per problem, with Holm-adjusted p-values per problem."""
    out = []
    for problem, rows in ok.groupby("problem"):
        found: list[dict] = []
        responses = ["transitions"] + (["bands"] if rows["bands"].notna().all() else [])
        for response in responses:
            data = rows[rows[response].notna()]
            found += fit_counts(data, response)
            if data["depth"].nunique() > 1:
                found += [r for r in fit_counts(data, response, depth="contrasts") if r["term"].startswith("depth=")]
            found += trend_tests(data, response, "fourier") + trend_tests(data, response, "depth")
            if (data["epsilon"] > 0).any():
                found += trend_tests(data, response, "epsilon")
        periodic = rows[rows["transitions_per_period"].notna() & rows["fourier"].notna()]
        if len(periodic):
            # With the 1D sincos map u is periodic: 2^(i-1) periods on [0, 1]. Transitions per period
            # are fitted as transitions with an offset log(periods): what the network adds to the map.
            periods = np.log(2.0 ** (periodic["fourier"].astype("float64").to_numpy() - 1))
            found += [dict(r, response="transitions_per_period") for r in fit_counts(periodic, "transitions", offset=periods)]
            found += trend_tests(periodic, "transitions_per_period", "fourier") + trend_tests(periodic, "transitions_per_period", "depth")
        for r in found:
            r["problem"] = problem
            r.setdefault("within", "")  # fitted on all of the problem's runs
        p_holm = holm(np.array([r["p_value"] for r in found], dtype=float))
        for r, p in zip(found, p_holm):
            r["p_holm"] = p
        out += found
    return pd.DataFrame(out, columns=COLUMNS)
