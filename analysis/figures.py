"""The analysis figures (seaborn on matplotlib's object API: no global pyplot state, no display).

Every function takes the rows it draws and returns a Figure; `analyze` writes them as PNG.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.data import read_profiles, read_trial_table, varying
from drm.problems import PROBLEMS

LABELS = {"fourier_label": "i", "epsilon": "ε"}
ORDER = ["none", "1", "2", "3", "4", "5", "6", "7", "8"]


def _panels(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per (ε, epochs) present, and per map type when more than one was used (plain-DRM
    runs, which have no map type, appear in each): the factors a depth × i figure does not show."""
    maps = sorted(rows.loc[rows["fourier"].notna(), "fourier_map"].dropna().unique())
    out = []
    for (eps, epochs), group in rows.groupby(["epsilon", "epochs"], sort=True):
        for kind in maps if len(maps) > 1 else [None]:
            part = group if kind is None else group[group["fourier"].isna() | (group["fourier_map"] == kind)]
            title = f"ε = {eps:g}, {int(epochs):,} epochs" + (f", map {kind}" if kind else "")
            out.append((title, part))
    return out


def _order(rows: pd.DataFrame) -> list[str]:
    present = set(rows["fourier_label"])
    return [o for o in ORDER if o in present] + sorted(present - set(ORDER))


def heatmap(rows: pd.DataFrame, problem: str) -> Figure:
    """Median transitions over depth × i, one panel per (ε, epochs)."""
    import seaborn as sns

    panels = _panels(rows)
    fig = Figure(figsize=(4.2 * len(panels) + 1, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, group) in zip(axes, panels):
        table = group.assign(t=group["transitions"].astype("float64")).pivot_table(
            index="depth", columns="fourier_label", values="t", aggfunc="median"
        )
        table = table[[c for c in _order(group) if c in table.columns]]
        sns.heatmap(table, annot=True, fmt="g", cmap="viridis", ax=ax, cbar_kws={"label": "median transitions"})
        ax.set(xlabel="Fourier map i (frequency 2^i π)", ylabel="depth (hidden layers)", title=title)
    fig.suptitle(f"{problem}: median transitions over seeds")
    return fig


def transitions_vs_i(rows: pd.DataFrame, problem: str) -> Figure:
    """Every seed's count against i, by depth, with the median of each group."""
    import seaborn as sns

    panels = _panels(rows)
    fig = Figure(figsize=(5 * len(panels) + 1, 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (title, group) in zip(axes, panels):
        data = group.assign(transitions=group["transitions"].astype("float64"), depth=group["depth"].astype(int).astype(str))
        order = _order(data)
        hue_order = sorted(data["depth"].unique(), key=int)
        several = len(hue_order) > 1  # seaborn cannot dodge one level
        sns.stripplot(data=data, x="fourier_label", y="transitions", hue="depth", order=order, hue_order=hue_order,
                      dodge=several, alpha=0.55, jitter=0.2, size=4, ax=ax, legend=False)
        sns.pointplot(data=data, x="fourier_label", y="transitions", hue="depth", order=order, hue_order=hue_order,
                      dodge=0.53 if several else False, estimator="median", errorbar=None, markers="D", linestyles="none", ax=ax)
        ax.set(xlabel="Fourier map i (none = plain DRM)", ylabel="transitions (every seed; ◆ median)", title=title)
        ax.legend(title="depth", fontsize=8)
    fig.suptitle(f"{problem}: transitions against the map frequency")
    return fig


def energy_vs_transitions(rows: pd.DataFrame, problem: str) -> Figure:
    """Energy against the transition count of each seed, with the classical energy per count where the
    references are known (drm.classical: per ε, at the counts the runs reached) and u ≡ 0's energy."""
    import seaborn as sns

    data = rows.assign(transitions=rows["transitions"].astype("float64"), energy=rows["energy"].astype("float64"))
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    sns.scatterplot(data=data, x="transitions", y="energy", hue="fourier_label", hue_order=_order(data), style="depth", ax=ax, s=30)
    if "energy_reference_same_count" in data:
        known = data[data["energy_reference_same_count"].notna()]
        closed = PROBLEMS[problem].reference_label if problem in PROBLEMS else None  # P2's closed form at ε = 0
        for eps, group in known.groupby(known["epsilon"].astype("float64"), sort=True):
            curve = group.groupby("transitions")["energy_reference_same_count"].first().sort_index()
            label = closed if eps == 0 and closed else f"classical, same count (ε = {eps:g})"
            ax.plot(curve.index, curve.to_numpy(), color="black", lw=1, ls="--", marker=".",
                    alpha=0.5 + 0.5 / max(1, known["epsilon"].nunique()), label=label)
        if len(known):
            ax.legend(fontsize=8)
    if (data["energy"] > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="transitions", ylabel="energy I(u) (quadrature)", title=f"{problem}: energy against transitions")
    return fig


def representative(rows: pd.DataFrame, key: list[str], limit: int) -> list[tuple[str, pd.Series]]:
    """Per configuration (at most `limit`), the seed whose count is the group's median (lowest seed on ties)."""
    out = []
    shown = [k for k in varying(rows, key) if k != "problem"]
    for values, group in rows.groupby(key, dropna=False, sort=True):
        t = group["transitions"].astype("float64")
        chosen = group.loc[(t - t.median()).abs().sort_values(kind="stable").index[0]]
        named = dict(zip(key, values if isinstance(values, tuple) else (values,)))
        label = ", ".join(f"{LABELS.get(k, k)} = {named[k]:g}" if isinstance(named[k], float) else f"{LABELS.get(k, k)} = {named[k]}" for k in shown)
        out.append((label or "all runs", chosen))
        if len(out) == limit:
            break
    return out


def _derivative(problem: str) -> str:
    """The derivative a problem's profiles hold: along its oscillation axis."""
    return f"u_{PROBLEMS[problem].axis_name}" if problem in PROBLEMS else "du"


def profiles(rows: pd.DataFrame, problem: str, key: list[str], limit: int = 8) -> Figure | None:
    """The paper's panels redrawn from stored profiles: u and u_x (1D) or the u_y field (2D)."""
    chosen = [(label, row, read_profiles(row["source"], row["trial_id"])) for label, row in representative(rows, key, limit)]
    chosen = [(label, row, p) for label, row, p in chosen if p is not None and row["seed"] in p.seeds]
    if not chosen:
        return None
    n = len(chosen)
    if chosen[0][2].two_d:
        cols = min(n, 4)
        fig = Figure(figsize=(3.4 * cols, 3.2 * ((n + cols - 1) // cols)), layout="constrained")
        axes = np.atleast_1d(fig.subplots((n + cols - 1) // cols, cols)).reshape(-1)
        for ax, (label, row, p) in zip(axes, chosen):
            image = ax.imshow(p.of(row["seed"])[1], origin="lower", extent=(0, 1, 0, 1), cmap="RdBu_r", vmin=-1.5, vmax=1.5)  # (ny, nx)
            ax.set(xlabel="x", ylabel="y", title=f"{label}\nseed {row['seed']}: {row['transitions']} transitions", aspect="equal")
            ax.title.set_fontsize(7)
        for ax in axes[n:]:
            ax.set_axis_off()
        fig.colorbar(image, ax=list(axes[:n]), shrink=0.7, label=_derivative(problem))
    else:
        fig = Figure(figsize=(3.2 * n, 4.4), layout="constrained")
        axes = np.array(fig.subplots(2, n, sharex=True, squeeze=False))
        for j, (label, row, p) in enumerate(chosen):
            u, du = p.of(row["seed"])
            axes[0, j].plot(p.axes["x"], u, lw=1)
            axes[1, j].plot(p.axes["x"], du, lw=0.8)
            axes[1, j].axhline(0, color="grey", lw=0.5)
            axes[0, j].set_title(f"{label}\nseed {row['seed']}: {row['transitions']} transitions", fontsize=7)
            axes[1, j].set(xlabel="x")
        axes[0, 0].set(ylabel="u")
        axes[1, 0].set(ylabel=_derivative(problem))
    fig.suptitle(f"{problem}: profiles of the median seed of each configuration")
    return fig


def interfaces_to_the_wall(rows: pd.DataFrame, problem: str, key: list[str], limit: int = 8) -> Figure | None:
    """N(d): interfaces along y on the lines at distance d from the walls (x = d and 1 − d, their mean),
    counted on the median seed's stored u_y field, log-log, with the branching construction's d^(−2/3)."""
    from drm.counts import count_transitions
    from drm.geometry import WALL_DISTANCES

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for label, row in representative(rows, key, limit):
        p = read_profiles(row["source"], row["trial_id"])
        if p is None or not p.two_d or row["seed"] not in p.seeds:
            continue
        x = p.axes["x"]
        field = p.of(row["seed"])[1]  # (ny, nx)
        tau = row.get("transition_threshold") or 0.1
        at = [(int(np.abs(x - d).argmin()), int(np.abs(x - (1 - d)).argmin())) for d in WALL_DISTANCES]  # the nearest columns
        n = [0.5 * (count_transitions(field[:, i], tau) + count_transitions(field[:, j], tau)) for i, j in at]
        seen = np.array(n) > 0
        if seen.any():
            ax.plot(np.array(WALL_DISTANCES)[seen], np.array(n)[seen], marker="o", lw=1, label=f"{label}, seed {row['seed']}")
            drawn += 1
    if not drawn:
        return None
    d = np.array(WALL_DISTANCES)
    ax.plot(d, 2.0 * (d / 0.5) ** (-2 / 3), color="black", ls="--", lw=1, label="∝ d^(−2/3) (branching)")
    ax.set(xscale="log", yscale="log", xlabel="distance d to the wall", ylabel="interfaces N(d) on the lines x = d, 1 − d",
           title=f"{problem}: interfaces toward the walls (stored {len(x)}² u_y; branching_exponent counts finer lines)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6)
    return fig


def learning_curves(rows: pd.DataFrame, problem: str, key: list[str], limit: int = 12) -> Figure | None:
    """Median training loss over seeds against the step, one line per configuration."""
    import seaborn as sns

    frames = []
    for label, row in representative(rows, key, limit):
        curves = read_trial_table(row["source"], "curves", row["trial_id"])
        if curves is None:
            continue
        seeds = set(rows.loc[rows["trial_id"] == row["trial_id"], "seed"].astype(int))
        mine = curves[curves["seed"].isin(seeds)]
        frames.append(mine.groupby("step", as_index=False)["loss"].median().assign(configuration=label))
    if not frames:
        return None
    data = pd.concat(frames)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(data=data, x="step", y="loss", hue="configuration", ax=ax, lw=1)
    if (data["loss"] > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="step (epoch)", ylabel="training loss (median over seeds)", title=f"{problem}: learning curves")
    ax.legend(fontsize=6, title=None)
    return fig


def counts_through_training(rows: pd.DataFrame, problem: str, key: list[str], limit: int = 12) -> Figure | None:
    """The transitions of each seed against the step (counted on the curve grid while training), one panel
    line per configuration: the median over seeds with the band from the lowest to the highest seed."""
    import seaborn as sns

    frames = []
    for label, row in representative(rows, key, limit):
        curves = read_trial_table(row["source"], "curves", row["trial_id"])
        if curves is None or "transitions" not in curves or curves["transitions"].isna().all():
            continue  # a table of 0.1, before counts were logged
        seeds = set(rows.loc[rows["trial_id"] == row["trial_id"], "seed"].astype(int))
        frames.append(curves[curves["seed"].isin(seeds)].assign(configuration=label, transitions=lambda c: c["transitions"].astype("float64")))
    if not frames:
        return None
    data = pd.concat(frames)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(data=data, x="step", y="transitions", hue="configuration", estimator="median", errorbar=("pi", 100), ax=ax, lw=1)
    ax.set(xlabel="step (epoch)", ylabel="transitions (median; band: all seeds)", title=f"{problem}: counts through training")
    ax.legend(fontsize=6, title=None)
    return fig

