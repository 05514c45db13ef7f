"""The paper against our seeds.

Each of the paper's counts is one run. It **agrees** with our seeds of the same setting when it lies
within their observed range (min to max): with a handful of seeds, interpolated quantiles would cut
off counts that a seed gave exactly (eight seeds [4, 8, 8, 8, 8, 8, 8, 8] put the 2.5% point at 4.7).
Beside it, a two-sided mid-p predictive p-value: if the paper's run were one more seed, how unusual
would its count be among ours (the paper's count ranked among the n + 1; ties count half)? With n
seeds it cannot fall below 1/(n + 1), so eight seeds can never call the paper an outlier at 5%. In
2D the paper uses transitions and twin bands interchangeably (N interfaces make N + 1 bands), so a
count within ±1 of our range is also reported. The share of seeds that reproduce it exactly comes
with a Wilson interval.

A setting that matches in everything but the epochs is a **shortened** row (both epoch counts
shown), so that a quick study, such as `make run`'s 10,000 epochs, is already set against the
paper; it is marked and not counted among the agreements.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.paper import PAPER, PAPER_LR, PAPER_PENALTY, PAPER_RHO, PAPER_WIDTH, PaperCount
from analysis.stats import wilson_ci
from drm.problems import get_problem

COLUMNS = ["figure", "problem", "depth", "fourier", "epsilon", "paper_epochs", "epochs", "shortened", "paper", "n", "median",
           "min", "max", "agrees", "within_one", "p_predictive", "exact_share", "exact_ci_low", "exact_ci_high"]


def predictive_p(counts: np.ndarray, paper: float) -> float:
    """Two-sided mid-p of `paper` as one more draw beside `counts` (exchangeable): its rank among the n + 1."""
    n = counts.size
    below, equal = float((counts < paper).sum()), float((counts == paper).sum())
    above = n - below - equal
    low = (below + (equal + 1) / 2) / (n + 1)
    high = (above + (equal + 1) / 2) / (n + 1)
    return min(1.0, 2 * min(low, high))


def _same_setting(ok: pd.DataFrame, paper: PaperCount) -> pd.Series:
    """Rows of the paper's setting in all but the epochs: problem, depth, map (frequency and type), ε,
    and the paper's other settings (width 128, lr 1e-4, λ = 500, the problem's activation and batch)."""
    problem = get_problem(paper.problem)
    same = (
        (ok["problem"] == paper.problem)
        & (ok["width"] == PAPER_WIDTH)
        & np.isclose(ok["lr"].astype("float64"), PAPER_LR)
        & np.isclose(ok["penalty"].astype("float64"), PAPER_PENALTY)
        & (ok["activation"] == problem.default_activation)
        & (ok["batch"] == problem.default_batch)
        & (ok["boundary_batch"] == problem.default_boundary_batch)
        & (np.isclose(ok["rho"].astype("float64"), PAPER_RHO) | (ok["activation"] == "relu"))
        & ok["resample"].fillna(True).astype(bool)
        & (True if paper.fourier is None else ok["fourier_map"] == problem.default_fourier_map)
        & (ok["depth"] == paper.depth)
        & (ok["fourier"].isna() if paper.fourier is None else ok["fourier"] == paper.fourier)
        & np.isclose(ok["epsilon"].astype("float64"), paper.epsilon, rtol=1e-9, atol=1e-12)
    )
    return same.fillna(False).astype(bool)


def _row(paper: PaperCount, epochs: int, counts: np.ndarray, two_d: bool) -> dict:
    low, high = float(counts.min()), float(counts.max())
    exact = int((counts == paper.transitions).sum())
    share_low, share_high = wilson_ci(exact, counts.size)
    return {
        "figure": paper.figure,
        "problem": paper.problem,
        "depth": paper.depth,
        "fourier": "none" if paper.fourier is None else paper.fourier,
        "epsilon": paper.epsilon,
        "paper_epochs": paper.epochs,
        "epochs": epochs,
        "shortened": epochs != paper.epochs,
        "paper": paper.transitions,
        "n": counts.size,
        "median": float(np.median(counts)),
        "min": low,
        "max": high,
        "agrees": bool(low <= paper.transitions <= high),
        "within_one": bool(low - 1 <= paper.transitions <= high + 1) if two_d else None,
        "p_predictive": predictive_p(counts, paper.transitions),
        "exact_share": exact / counts.size,
        "exact_ci_low": share_low,
        "exact_ci_high": share_high,
    }


def reproduction(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per paper count whose setting is in `ok`; where only other epochs ran, one shortened
    row per epoch count present."""
    out = []
    for paper in PAPER:
        same = ok[_same_setting(ok, paper) & ok["transitions"].notna()]
        if same.empty:
            continue
        two_d = bool((same["dim"] == 2).all())
        by_epochs = {int(e): g["transitions"].astype("float64").to_numpy() for e, g in same.groupby("epochs")}
        chosen = {paper.epochs: by_epochs[paper.epochs]} if paper.epochs in by_epochs else by_epochs
        out += [_row(paper, epochs, counts, two_d) for epochs, counts in sorted(chosen.items())]
    return pd.DataFrame(out, columns=COLUMNS)


def missing_settings(repro: pd.DataFrame) -> list[str]:
    """The paper's figures with no row in `repro` (a `reproduction` table), not even a shortened one."""
    found = set(repro["figure"])
    return sorted({p.figure for p in PAPER} - found, key=lambda f: (len(f), f))
