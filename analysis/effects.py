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
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.data import FACTORS, varying
from analysis.stats import holm, spearman_trend

COLUMNS = ["problem", "response", "term", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model", "within", "n"]
OTHER = [f for f in FACTORS if f not in ("problem", "dim", "depth", "fourier", "epsilon", "epochs")]
PERMUTATIONS = 200  # per permutation test (the smallest p it can give is 1/201)
TRIVIAL = {"twin_branching"}  # problems whose trivial minimiser candidate u ≡ 0 has no band


# Design

def design(frame: pd.DataFrame, depth: str = "linear", fourier: str = "linear") -> pd.DataFrame:
    """The regressors of `frame` (no constant); only factors that vary get a term. `depth` and
    `fourier` are "linear" (one slope) or "contrasts" (an indicator per level beyond the lowest)."""
    cols: dict[str, np.ndarray] = {}
    mapped = frame["fourier"].notna().to_numpy()
    i = frame["fourier"].astype("float64").to_numpy()
    if mapped.any() and not mapped.all():
        cols["fourier_on"] = mapped.astype(float)
    levels_i = np.unique(i[mapped]) if mapped.any() else np.array([])
    if levels_i.size > 1:
        if fourier == "linear":
            cols["fourier_i"] = np.where(mapped, i - levels_i[0], 0.0)
        else:
            for level in levels_i[1:]:
                cols[f"fourier={int(level)}"] = (mapped & (i == level)).astype(float)
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


def factor_of(term: str) -> str:
    """The swept factor a term belongs to (`depth=5` and `depth` are both depth)."""
    name = term.split("=", 1)[0]
    return {"fourier_i": "fourier", "fourier_on": "fourier", "fourier": "fourier", "epsilon_on": "epsilon",
            "log_epsilon": "epsilon", "log_epochs": "epochs"}.get(name, name)


def cells_of(x: pd.DataFrame) -> np.ndarray:
    """Per run, the index of its cell: the runs with the same regressors (one configuration)."""
    if x.shape[1] == 0:
        return np.zeros(len(x), dtype=int)
    return np.unique(x.to_numpy(dtype=float).round(12), axis=0, return_inverse=True)[1].reshape(-1)


def lattice(frame: pd.DataFrame) -> np.ndarray:
    """Per run, the step of its count's lattice: 2^(i-1) for the periodic 1D map, else 1."""
    periodic = frame["transitions_per_period"].notna() & frame["fourier"].notna()
    i = frame["fourier"].astype("float64").fillna(1.0).to_numpy()
    return np.where(periodic.to_numpy(), 2.0 ** (i - 1.0), 1.0)


# Fits

def _row(response: str, term: str, b: float, low: float, high: float, p: float, model: str, n: int) -> dict:
    return {"response": response, "term": term, "estimate": float(b), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(p), "model": model, "n": n}


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
    from scipy import stats

    y = frame[response].astype("float64").to_numpy()
    x = design(frame, depth, fourier)
    n = len(y)
    if x.shape[1] == 0 or n - x.shape[1] - 1 < 2 or y.sum() == 0:
        return []
    exog = sm.add_constant(x.to_numpy(), has_constant="add")
    terms = list(x.columns)
    df = n - exog.shape[1]
    on_lattice = steps is not None and bool((steps != 1).any())
    weights = 1.0 / steps if on_lattice else None
    cells = cells_of(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and perfect-fit notices: judged below
        poisson = sm.GLM(y, exog, family=sm.families.Poisson(), var_weights=weights).fit()
        mu = poisson.mu
        dispersion = poisson.pearson_chi2 / poisson.df_resid
        between, df_between, lack_of_fit = _between_cells(y, mu, cells, weights, exog.shape[1])
        # Cameron & Trivedi (1990), on the lattice's own scale m = T/step: regress
        # ((m-mu)^2 - m)/mu on mu; a positive slope means over-dispersion.
        s = steps if on_lattice else 1.0
        m, mu_m = y / s, mu / s
        aux = sm.OLS(((m - mu_m) ** 2 - m) / mu_m, mu_m).fit()
        p_over = float(stats.norm.sf(aux.tvalues[0])) if np.isfinite(aux.tvalues[0]) else 1.0
        if p_over < 0.05 and dispersion > 1 and not on_lattice and not lack_of_fit:
            # NB2 estimates; each error the larger of the model's and the sandwich's (HC0 with the
            # small-sample factor n/(n-p)), which alone is too small at a few dozen runs.
            nb = sm.NegativeBinomial(y, exog, loglike_method="nb2").fit(disp=0, maxiter=500)
            robust = sm.NegativeBinomial(y, exog, loglike_method="nb2").fit(start_params=nb.params, disp=0, maxiter=500, cov_type="HC0")
            params = nb.params[1 : 1 + len(terms)]
            bse = np.fmax(nb.bse[1 : 1 + len(terms)], robust.bse[1 : 1 + len(terms)] * math.sqrt(n / max(1, df)))
            model = f"negative_binomial, the larger of model and sandwich errors (alpha {nb.params[-1]:.3g}, dispersion {dispersion:.2f})"
        else:
            # Seeds are replicates of their configuration: where the configurations' means stray
            # from the fit more than the seeds stray from their means (an F test; seeds that agree
            # exactly; an interaction the model lacks), the configuration is the unit and the
            # dispersion is the between-configurations one, on its df. Either is floored at 1.
            scale, source = float(dispersion), "among seeds"
            if lack_of_fit:
                scale, df, source = between, df_between, "between configurations (lack of fit)"
            if not scale >= 1:
                scale, source = 1.0, f"{source} {scale:.2f}, floored at 1"
            quasi = sm.GLM(y, exog, family=sm.families.Poisson(), var_weights=weights).fit(scale=scale)
            params, bse = quasi.params[1:], quasi.bse[1:]
            model = f"quasi_poisson (dispersion {scale:.2f}: {source})"
    model += f", t on {df} df"
    if on_lattice:
        model += ", variance on the map's lattice (weights 2^-(i-1))"
    if depth != "linear":
        model += ", depth as contrasts"
    if fourier != "linear":
        model += ", i as contrasts"
    wanted = [t for t in terms if t.startswith(only)]
    perm = permutation_p(x, y, seed=n, terms=wanted) if permutation else {}
    if permutation:
        model += f", permutation p ({PERMUTATIONS}, within cells of the other factors)"
    t95 = float(stats.t.ppf(0.975, df))
    rows = []
    for term, b, se in zip(terms, params, bse):
        if term not in wanted:
            continue
        ok = np.isfinite(b) and np.isfinite(se) and se > 0
        p = perm.get(term, math.nan) if permutation else (2 * stats.t.sf(abs(b / se), df) if ok else math.nan)
        rows.append(_row(response, term, b, b - t95 * se if ok else math.nan, b + t95 * se if ok else math.nan, p, model, n))
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
        rows.append(_row("log_energy", term, b, b - t95 * se if ok else math.nan, b + t95 * se if ok else math.nan,
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
            rows.append(_row("trivial", term, math.nan, math.nan, math.nan, perm[term], "logistic: separated, permutation p only", n))
            continue
        b, se = fitted.params[k + 1], fitted.bse[k + 1]
        rows.append(_row("trivial", term, b, b - t95 * se, b + t95 * se, perm[term],
                         f"logistic (log odds ratio), t on {df} df, permutation p ({PERMUTATIONS})", n))
    return rows


def trend_tests(frame: pd.DataFrame, response: str, factor: str) -> list[dict]:
    """Spearman trend of `response` on `factor` within each cell of the other varying factors."""
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
        row = _row(response, f"trend {label}", rho, low, high, p, "spearman (rank correlation; NaN: no variation)", len(group))
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
        if problem in TRIVIAL:
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
