"""Per-configuration summary: counts of what ran and what is kept, the count statistics with bootstrap
intervals, energies, and, for P2, energies against the zig-zag reference of their own transition count."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data import FACTORS, varying
from analysis.stats import bootstrap_ci
from drm.classical.judge import COLUMNS as JUDGED
from drm.classical.judge import References
from drm.metrics import metrics

KEY = ["problem", "depth", "fourier_label", "epsilon", "epochs"]
# The columns whose median per configuration comes with a bootstrap interval (beside the counts' and the energy's).
WITH_INTERVALS = ("energy_gap", "band_width_mean", "band_width_cv", "wavenumber", "lock_in", "branching_exponent", "symmetry_error")


def with_reference(rows: pd.DataFrame, references: References | None = None) -> pd.DataFrame:
    """The rows with their columns against the classical references (drm.classical.judge): null ones
    filled from `references` where it has them (tables landed without scipy, or older than the
    columns), and energy_over_reference, the energy over the classical energy with the row's count."""
    rows = rows.copy()
    for column in JUDGED:
        if column not in rows.columns:
            rows[column] = pd.Series([None] * len(rows), index=rows.index, dtype="object")
    if references is not None and len(rows):
        empty = rows[list(JUDGED)].isna().all(axis=1) & rows["energy"].notna()
        if empty.any():
            subset = rows.loc[empty, ["problem", "epsilon", "energy", "transitions", *JUDGED]].astype(object)
            filled = references.fill([{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in subset.to_dict("records")])
            for column in JUDGED:
                rows[column] = rows[column].astype(object)  # a None among floats or booleans stays a None
                rows.loc[empty, column] = pd.Series([r[column] for r in filled], index=rows.index[empty], dtype=object)
    for column in JUDGED[:-1]:
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype("float64")
    rows["energy_over_reference"] = rows["energy"].astype("float64") / rows["energy_reference_same_count"]
    return rows


def configuration_key(rows: pd.DataFrame) -> list[str]:
    """The columns that name a configuration: the usual factors, and any other factor that varies."""
    return KEY + [c for c in varying(rows, FACTORS) if c not in KEY and c not in ("fourier", "dim")]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration; statistics over its `ok` seeds only."""
    rows = with_reference(rows)
    key = configuration_key(rows)
    out = []
    for values, group in rows.groupby(key, dropna=False, sort=True):
        ok = group[group["status"] == "ok"]
        t = ok["transitions"].astype("float64").to_numpy()
        e = ok["energy"].astype("float64").to_numpy()
        entry = dict(zip(key, values))
        entry.update(
            n=len(group),
            n_ok=len(ok),
            diverged=int((group["status"] == "diverged").sum()),
            stopped=int((group["status"] == "stopped").sum()),
            failed=int((group["status"] == "failed").sum()),
            diverged_share=float((group["status"] == "diverged").mean()),
        )
        if len(ok):
            q25, q75 = np.quantile(t, [0.25, 0.75])
            mean_ci = bootstrap_ci(t, np.mean)
            median_ci = bootstrap_ci(t, np.median)
            energy_ci = bootstrap_ci(e, np.median)
            entry.update(
                transitions_median=float(np.median(t)),
                transitions_mean=float(t.mean()),
                transitions_q25=float(q25),
                transitions_q75=float(q75),
                transitions_iqr=float(q75 - q25),
                transitions_mean_ci_low=mean_ci[0],
                transitions_mean_ci_high=mean_ci[1],
                transitions_median_ci_low=median_ci[0],
                transitions_median_ci_high=median_ci[1],
                transitions_p025=float(np.quantile(t, 0.025)),
                transitions_p975=float(np.quantile(t, 0.975)),
                transitions_min=float(t.min()),
                transitions_max=float(t.max()),
                transitions_all_equal=bool(t.size > 1 and np.ptp(t) == 0),  # every seed gave the same count
                energy_median=float(np.median(e)),
                energy_median_ci_low=energy_ci[0],
                energy_median_ci_high=energy_ci[1],
            )
            extras = [*((m.name, m.summary_column) for m in metrics() if m.summary), ("energy_over_reference", "energy_over_reference_median"),
                      ("energy_reference", "energy_reference_best")]  # the best: one value per (problem, ε)
            for extra, column in extras:
                if extra not in ok:
                    continue
                values_ = ok[extra].astype("float64").to_numpy()
                if np.isfinite(values_).any():  # a share is the mean of 0/1, a median the median
                    entry[column] = float(np.nanmean(values_) if column.endswith("_share") else np.nanmedian(values_))
                if extra in WITH_INTERVALS:  # the seeds that gave a value: bootstrap interval of their median
                    low, high = bootstrap_ci(values_[np.isfinite(values_)], np.median)
                    entry[f"{column}_ci_low"], entry[f"{column}_ci_high"] = low, high
        out.append(entry)
    return pd.DataFrame(out)
