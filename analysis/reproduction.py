"""The paper against our seeds: a single-run count agrees when it lies within the 2.5–97.5% range of
our per-seed counts for the same setting; the share of seeds that reproduce it exactly comes with a
Wilson interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.paper import PAPER, PAPER_LR, PAPER_PENALTY, PAPER_RHO, PAPER_WIDTH
from drm.problems import get_problem
from analysis.stats import wilson_ci

COLUMNS = ["figure", "problem", "depth", "fourier", "epsilon", "epochs", "paper", "n", "median", "p025", "p975",
           "agrees", "exact_share", "exact_ci_low", "exact_ci_high"]


def reproduction(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per paper count whose setting is in `ok`: problem, depth, map (frequency and type), ε and
    epochs equal, and everything else at the paper's settings (width 128, lr 1e-4, λ = 500, the
    problem's activation and batch)."""
    out = []
    for paper in PAPER:
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
            & (ok["epochs"] == paper.epochs)
        )
        counts = ok.loc[same.fillna(False).astype(bool), "transitions"].astype("float64").dropna().to_numpy()
        if counts.size == 0:
            continue
        low, high = np.quantile(counts, [0.025, 0.975])
        exact = int((counts == paper.transitions).sum())
        share_low, share_high = wilson_ci(exact, counts.size)
        out.append(
            {
                "figure": paper.figure,
                "problem": paper.problem,
                "depth": paper.depth,
                "fourier": "none" if paper.fourier is None else paper.fourier,
                "epsilon": paper.epsilon,
                "epochs": paper.epochs,
                "paper": paper.transitions,
                "n": counts.size,
                "median": float(np.median(counts)),
                "p025": float(low),
                "p975": float(high),
                "agrees": bool(low <= paper.transitions <= high),
                "exact_share": exact / counts.size,
                "exact_ci_low": share_low,
                "exact_ci_high": share_high,
            }
        )
    return pd.DataFrame(out, columns=COLUMNS)


def missing_settings(ok: pd.DataFrame) -> list[str]:
    """The paper's figures with no matching setting in these results (said in the report)."""
    found = set(reproduction(ok)["figure"])
    return sorted({p.figure for p in PAPER} - found, key=lambda f: (len(f), f))
