"""The fits behind effects.csv: a log-link count regression with honest errors, a permutation test
within cells, least squares on log energy, a logistic fit of the runs stuck at u ≡ 0.

Each returns one row per term (`response, term, estimate, ci_low, ci_high, p_value, model, n`);
the families that call them, and the reasons for each error model, are in `analysis.effects`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from analysis.design import cells_of, design, factor_of

PERMUTATIONS = 200  # per permutation test (the smallest p it can give is 1/201)


def term_row(response: str, term: str, b: float, low: float, high: float, p: float, model: str, n: int) -> dict:
    return {"response": response, "term": term, "estimate": float(b), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(p), "model": model, "n": n}


_SEPARATED_MU = 1e-8  # a fitted mean this far below the counts' scale: the fit went to the boundary
_SEPARATED_SE = 10.0  # a log-ratio error past this (a 95% interval spanning e^±20) is the boundary's, not the data's


def fit_counts(frame: pd.DataFrame, response: str, *, depth: str = "linear", fourier: str = "linear",
               steps: np.ndarray | None = None, permutation: bool = False, only: str = "") -> list[dict]:
    """One row per term of a log-link count regression of `response` on the varying factors.

    Intervals and p-values use Student's t on the residual degrees of freedom (a handful of
    configurations × seeds is not a large sample), and the quasi-Poisson dispersion is floored at 1:
    counts that vary less than Poisson ones (seeds that agree exactly, a lattice) make the intervals
    no narrower than Poisson's, never a round-off artefact of zero width. `steps` is each run's
    lattice step (`lattice`): a count T = m·step with m Poisson-like has variance step·E[T]. With
    `permutation`, p-values come from a permutation test within the other factors' cells. `only`:
    the rows of the terms that start with it."""
    import statsmodels.api as sm

    y = frame[response].astype("float64").to_numpy()
    x = design(frame, depth, fourier)
    n = len(y)
    if x.shape[1] == 0 or n - x.shape[1] - 1 < 2 or y.sum() == 0:
        return []
    exog = sm.add_constant(x.to_numpy(), has_constant="add")
    on_lattice = steps is not None and bool((steps != 1).any())
    params, bse, df, model, separated = _count_model(y, exog, steps if on_lattice else None, cells_of(x))
    # A level whose every run counted 0 has no finite log-ratio: the fit drifts to the boundary, and a
    # Wald interval there is an artefact of where it stopped. Such terms get a permutation p alone.
    unbounded = {t for t, se in zip(x.columns, bse) if separated and not (np.isfinite(se) and se < _SEPARATED_SE)}
    if on_lattice:
        model += ", variance on the map's lattice (weights 2^-(i-1))"
    if depth != "linear":
        model += ", depth as contrasts"
    if fourier != "linear":
        model += ", i as contrasts"
    wanted = [t for t in x.columns if t.startswith(only)]
    perm = permutation_p(x, y, seed=n, terms=wanted if permutation else [t for t in wanted if t in unbounded]) if permutation or unbounded else None
    if permutation:
        model += f", permutation p ({PERMUTATIONS}, within cells of the other factors)"
    if unbounded & set(wanted):
        terms = ", ".join(sorted(unbounded & set(wanted)))
        model += f", separation: some level counted 0 in every run (no finite estimate for {terms}; permutation p)"
    return _term_rows(response, list(x.columns), params, bse, df, model, n, wanted, perm, unbounded)


def _count_model(y: np.ndarray, exog: np.ndarray, steps: np.ndarray | None, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, str, bool]:
    """(estimates, errors, df, model, separated) of the terms (the constant left out), the error model chosen
    from the data; `separated`: some runs that counted 0 are fitted a mean of (numerically) 0."""
    import statsmodels.api as sm
    from scipy import stats

    n, k = exog.shape
    df = n - k
    weights = None if steps is None else 1.0 / steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and perfect-fit notices: judged below
        poisson = sm.GLM(y, exog, family=sm.families.Poisson(), var_weights=weights).fit()
        mu = poisson.mu
        separated = bool(np.any((y == 0) & (mu < _SEPARATED_MU * max(1.0, float(y.mean())))))
        dispersion = poisson.pearson_chi2 / poisson.df_resid
        between, df_between, lack_of_fit = _between_cells(y, mu, cells, weights, k)
        # Cameron & Trivedi (1990), on the lattice's own scale m = T/step: regress
        # ((m-mu)^2 - m)/mu on mu; a positive slope means over-dispersion.
        s = 1.0 if steps is None else steps
        m, mu_m = y / s, mu / s
        aux = sm.OLS(((m - mu_m) ** 2 - m) / mu_m, mu_m).fit()
        p_over = float(stats.norm.sf(aux.tvalues[0])) if np.isfinite(aux.tvalues[0]) else 1.0
        if p_over < 0.05 and dispersion > 1 and steps is None and not lack_of_fit:
            # NB2 estimates; each error the larger of the model's and the sandwich's (HC0 with the
            # small-sample factor n/(n-p)), which alone is too small at a few dozen runs.
            nb = sm.NegativeBinomial(y, exog, loglike_method="nb2").fit(disp=0, maxiter=500)
            robust = sm.NegativeBinomial(y, exog, loglike_method="nb2").fit(start_params=nb.params, disp=0, maxiter=500, cov_type="HC0")
            bse = np.fmax(nb.bse[1:k], robust.bse[1:k] * math.sqrt(n / max(1, df)))
            return nb.params[1:k], bse, df, (f"negative_binomial, the larger of model and sandwich errors (alpha {nb.params[-1]:.3g}, "
                                            f"dispersion {dispersion:.2f}), t on {df} df"), separated
        # Seeds are replicates of their configuration: where the configurations' means stray from
        # the fit more than the seeds stray from their means (an F test; seeds that agree exactly;
        # an interaction the model lacks), the configuration is the unit and the dispersion is the
        # between-configurations one, on its df. Either is floored at 1.
        scale, source = float(dispersion), "among seeds"
        if lack_of_fit:
            scale, df, source = between, df_between, "between configurations (lack of fit)"
        if not scale >= 1:
            scale, source = 1.0, f"{source} {scale:.2f}, floored at 1"
        quasi = sm.GLM(y, exog, family=sm.families.Poisson(), var_weights=weights).fit(scale=scale)
        return quasi.params[1:], quasi.bse[1:], df, f"quasi_poisson (dispersion {scale:.2f}: {source}), t on {df} df", separated


def _term_rows(response: str, terms: list[str], params: np.ndarray, bse: np.ndarray, df: int, model: str, n: int,
               wanted: list[str], perm: dict[str, float] | None, unbounded: set[str] = frozenset()) -> list[dict]:
    """Rows of the `wanted` terms: t intervals on `df`, and t p-values unless permutation ones are given;
    an `unbounded` term (separation) has no estimate and its permutation p."""
    from scipy import stats

    t95 = float(stats.t.ppf(0.975, df))
    rows = []
    for term, b, se in zip(terms, params, bse):
        if term not in wanted:
            continue
        ok = np.isfinite(b) and np.isfinite(se) and se > 0 and term not in unbounded
        b = b if term not in unbounded else math.nan
        p = perm.get(term, math.nan) if perm is not None and (term in perm) else (2 * stats.t.sf(abs(b / se), df) if ok else math.nan)
        rows.append(term_row(response, term, b, b - t95 * se if ok else math.nan, b + t95 * se if ok else math.nan, p, model, n))
    return rows


def _between_cells(y: np.ndarray, mu: np.ndarray, cells: np.ndarray, weights: np.ndarray | None,
                   parameters: int) -> tuple[float, int, bool]:
    """The Pearson dispersion of the configurations' mean counts about the fit, its df, and whether
    it exceeds the seeds' dispersion about their own configuration's mean (F test, 5%; always when
    the seeds agree exactly). Under a model that holds, both estimate the same dispersion."""
    from scipy import stats

    w = np.ones_like(y) if weights is None else weights
    frame = pd.DataFrame({"cell": cells, "y": y, "mu": mu, "w": w})
    frame["mean"] = frame.groupby("cell")["y"].transform("mean")
    grouped = frame.groupby("cell").agg(y=("y", "mean"), mu=("mu", "mean"), w=("w", "mean"), n=("y", "size"))
    df_between, df_within = len(grouped) - parameters, len(y) - len(grouped)
    if df_between < 1:
        return math.nan, 0, False
    between = float((grouped["n"] * grouped["w"] * (grouped["y"] - grouped["mu"]) ** 2 / grouped["mu"]).sum()) / df_between
    within_chi2 = float((frame["w"] * (frame["y"] - frame["mean"]) ** 2 / frame["mu"]).sum())
    if within_chi2 <= 1e-12 * max(1.0, between):
        return between, df_between, between > 1e-12
    if df_within < 1:
        return between, df_between, False
    lack = stats.f.sf(between / (within_chi2 / df_within), df_between, df_within) < 0.05
    return between, df_between, bool(lack)


def permutation_p(x: pd.DataFrame, y: np.ndarray, seed: int = 0, permutations: int = PERMUTATIONS,
                  terms: list[str] | None = None) -> dict[str, float]:
    """Per term of design `x`, the two-sided permutation p-value of the covariance of that regressor
    with y within the cells of the other factors (the score statistic of the term), the factor's
    values permuted within each cell: exact under exchangeability, whatever the distribution of y."""
    rng = np.random.default_rng(seed)
    out = {}
    for term in x.columns if terms is None else terms:
        own = factor_of(term)
        others = [c for c in x.columns if factor_of(c) != own]
        codes = cells_of(x[others])
        f = x[term].to_numpy()
        yc = y - pd.Series(y).groupby(codes).transform("mean").to_numpy()
        observed = abs(float(f @ yc))
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        blocks = np.split(order, bounds)
        draws = np.empty((permutations, f.size))
        for block in blocks:  # every permutation of this cell at once
            draws[:, block] = f[block[np.argsort(rng.random((permutations, block.size)), axis=1)]]
        stats_ = np.abs(draws @ yc)
        out[term] = float((1 + np.sum(stats_ >= observed - 1e-12 * max(1.0, observed))) / (permutations + 1))
    return out


def fit_log_energy(frame: pd.DataFrame) -> list[dict]:
    """Least squares of log I(u) on the varying factors (t intervals): energies span decades."""
    import statsmodels.api as sm
    from scipy import stats

    frame = frame[frame["energy"].astype("float64") > 0]
    y = np.log(frame["energy"].astype("float64").to_numpy())
    x = design(frame)
    n = len(y)
    if x.shape[1] == 0 or n - x.shape[1] - 1 < 2:
        return []
    fit = sm.OLS(y, sm.add_constant(x.to_numpy(), has_constant="add")).fit()
    df = int(fit.df_resid)
    t95 = float(stats.t.ppf(0.975, df))
    model = f"least squares on log energy, t on {df} df"
    exact = fit.ssr <= 1e-20 * n * max(1.0, float(np.max(y**2)))  # the factors fit every energy: no error left to estimate
    if exact:
        model = "least squares on log energy: the factors fit every energy exactly, no interval"
    rows = []
    for term, b, se, p in zip(x.columns, fit.params[1:], fit.bse[1:], fit.pvalues[1:]):
        ok = np.isfinite(se) and se > 0 and not exact
        rows.append(term_row("log_energy", term, b, b - t95 * se if ok else math.nan, b + t95 * se if ok else math.nan,
                         p if ok else math.nan, model, n))
    return rows


def fit_trivial(frame: pd.DataFrame, trivial: np.ndarray) -> list[dict]:
    """A logistic fit of the share of trivial runs (log odds ratios). Where the design separates the
    outcome (a cell all trivial or none), the estimates do not exist: permutation p only."""
    import statsmodels.api as sm
    from scipy import stats

    x = design(frame)
    n = len(trivial)
    if x.shape[1] == 0 or n - x.shape[1] - 1 < 2 or trivial.all() or not trivial.any():
        return []
    y = trivial.astype(float)
    exog = sm.add_constant(x.to_numpy(), has_constant="add")
    df = n - exog.shape[1]
    fitted = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fitted = sm.GLM(y, exog, family=sm.families.Binomial()).fit()
            if not np.all(np.isfinite(fitted.bse)) or np.any((fitted.mu < 1e-6) | (fitted.mu > 1 - 1e-6)):
                fitted = None
        except (ValueError, np.linalg.LinAlgError, sm.tools.sm_exceptions.PerfectSeparationError):
            fitted = None
    perm = permutation_p(x, y, seed=n)
    t95 = float(stats.t.ppf(0.975, df))
    rows = []
    for k, term in enumerate(x.columns):
        if fitted is None:
            rows.append(term_row("trivial", term, math.nan, math.nan, math.nan, perm[term], "logistic: separated, permutation p only", n))
            continue
        b, se = fitted.params[k + 1], fitted.bse[k + 1]
        rows.append(term_row("trivial", term, b, b - t95 * se, b + t95 * se, perm[term],
                         f"logistic (log odds ratio), t on {df} df, permutation p ({PERMUTATIONS})", n))
    return rows
