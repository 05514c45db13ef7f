"""Per-configuration summary: counts of what ran and what is kept, the count statistics with bootstrap
intervals, energies, and, for P2, energies against the zig-zag reference of their own transition count."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data import FACTORS, varying
from analysis.stats import bootstrap_ci
from drm.metrics import metrics
from drm.problems import PROBLEMS

KEY = ["problem", "depth", "fourier_label", "epsilon", "epochs"]


def with_reference(rows: pd.DataFrame) -> pd.DataFrame:
    """Adds energy_reference and energy_over_reference: the energy of the best profile with the row's
    count where its problem knows it in closed form at the row's ε (drm.Problem.closed_form_energy);
    NaN elsewhere."""
    rows = rows.copy()
    reference = np.full(len(rows), np.nan)
    counted = rows["transitions"].notna().to_numpy()
    epsilon = rows["epsilon"].astype("float64").fillna(0.0).to_numpy()
    for name in rows["problem"].dropna().unique():
        if name not in PROBLEMS:  # rows of a problem whose package is not installed here
            continue
        for eps in np.unique(epsilon):
            mine = (rows["problem"] == name).to_numpy() & counted & (epsilon == eps)
            expected = PROBLEMS[name].closed_form_energy(rows.loc[mine, "transitions"].astype("float64").to_numpy(), float(eps))
            if expected is not None:
                reference[mine] = expected
    rows["energy_reference"] = reference
    rows["energy_over_reference"] = rows["energy"].astype("float64") / reference
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
            for extra, column in [*((m.name, m.summary_column) for m in metrics() if m.summary),
                                  ("energy_over_reference", "energy_over_reference_median")]:
                if extra not in ok:
                    continue
                values_ = ok[extra].astype("float64").to_numpy()
                if np.isfinite(values_).any():  # a share is the mean of 0/1, a median the median
                    entry[column] = float(np.nanmean(values_) if column.endswith("_share") else np.nanmedian(values_))
        out.append(entry)
    return pd.DataFrame(out)
