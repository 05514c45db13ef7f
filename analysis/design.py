"""The regressors of a study: which factors vary, coded as slopes or contrasts, and the cells
(configurations) and lattice steps the models need."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data import FACTORS, RANGES, varying

MAX_LEVELS = 8  # a factor of more values than this gets one slope: a contrast per value would be a cell per configuration
OTHER = [f for f in FACTORS if f not in ("problem", "dim", "depth", "fourier", "epsilon", "epochs")]


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
        if sampled(frame, name):  # a sampled range: one slope (in log where it spans a decade), not a contrast per value
            v = frame[name].astype("float64").to_numpy()
            logged = v.min() > 0 and v.max() >= 10 * v.min()
            cols[f"log_{name}" if logged else name] = np.log(v / v.min()) if logged else v - v.min()
            continue
        values = frame[name].astype("object").where(frame[name].notna(), "none").astype(str).to_numpy()
        for level in sorted(set(values))[1:]:
            cols[f"{name}={level}"] = (values == level).astype(float)
    out = pd.DataFrame(cols, index=frame.index)
    return _independent(out)


def sampled(frame: pd.DataFrame, name: str) -> bool:
    """Whether factor `name` is a range a sampler drew from (one slope, no cells): as the sweeps' saved
    specs say (analysis.data.load keeps their ranges in frame.attrs); for folders without a spec, a
    numeric factor of more than MAX_LEVELS values. Either way numeric, none missing."""
    values = frame[name]
    if not (pd.api.types.is_numeric_dtype(values) and values.notna().all()):
        return False
    ranges = frame.attrs.get(RANGES)
    return name in ranges if ranges is not None else values.nunique() > MAX_LEVELS


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
    if name.startswith("log_") and name[4:] in FACTORS:  # log_epsilon, log_epochs, a sampled range's log_lr
        return name[4:]
    return {"fourier_i": "fourier", "fourier_on": "fourier", "fourier": "fourier", "epsilon_on": "epsilon"}.get(name, name)


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
