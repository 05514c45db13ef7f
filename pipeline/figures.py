"""Profile figures as PNG bytes: a trial's (every seed overlaid, the median seed emphasised) or one
seed's (the paper's panels: u and u_x in 1D, the u_y field in 2D).

Drawn from the trial's profiles (drm.profiles), with matplotlib's object API (no pyplot state),
so that it is safe in a thread and needs no display.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from drm.profiles import Profiles, read


def profile_png(profiles: Profiles, seed: int, title: str, du: str = "u_x") -> bytes:
    """One seed's profile drawn as a PNG; `du` names the derivative (u_x, u_y)."""
    from matplotlib.figure import Figure

    u, derivative = profiles.of(seed)
    if profiles.two_d:
        fig = Figure(figsize=(9, 4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, field, name in ((axes[0], u, "u"), (axes[1], derivative, du)):
            image = ax.imshow(field, origin="lower", extent=(0, 1, 0, 1), cmap="viridis" if name == "u" else "RdBu_r")  # (ny, nx)
            ax.set(xlabel="x", ylabel="y", title=name)
            fig.colorbar(image, ax=ax, shrink=0.8)
    else:
        x = profiles.axes["x"]
        fig = Figure(figsize=(7, 5), layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
        axes[0].plot(x, u, lw=1)
        axes[0].set(ylabel="u")
        axes[1].plot(x, derivative, lw=0.8)
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set(xlabel="x", ylabel=du)
        if np.nanmax(np.abs(derivative)) < 1.5:
            axes[1].set_ylim(-1.5, 1.5)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def drawn(setting: str, table: pa.Table, replicates: pa.Table, title: str, du: str = "u_x") -> dict[int | None, bytes]:
    """The figures a spec's `figures:` asks for: {None: the trial's} (trial), {seed: its own} (seed), or
    none; drawn from the trial's profiles table (drm.profiles, either layout)."""
    if setting == "none" or table.num_rows == 0:
        return {}
    profiles = read(table)
    if setting == "seed":
        return {int(seed): profile_png(profiles, seed, f"{title} seed {seed}", du) for seed in profiles.seeds}
    return {None: trial_png(profiles, replicates, title, du)}


def median_seed(replicates: pa.Table) -> int:
    """The seed of median energy among those that are ok (the lower of the two middle ones); the
    first seed when none is ok."""
    rows = [r for r in replicates.to_pylist() if r["status"] == "ok" and r.get("energy") is not None and np.isfinite(r["energy"])]
    if not rows:
        return int(replicates.column("seed")[0].as_py())
    rows.sort(key=lambda r: (r["energy"], r["seed"]))
    return int(rows[(len(rows) - 1) // 2]["seed"])


def trial_png(profiles: Profiles, replicates: pa.Table, title: str, du: str = "u_x") -> bytes:
    """Every seed's profile in one figure, the seed of median energy drawn bold: u and `du` along x
    in 1D; in 2D the median seed's `du` field and every seed's `du` along y at x = 1/2 (where
    transitions are counted)."""
    from matplotlib.figure import Figure

    middle = median_seed(replicates)

    def curves(ax, t: np.ndarray, lines: np.ndarray) -> None:
        """One line per seed: `lines` (K, n) along `t`."""
        for seed, line in zip(profiles.seeds, lines):
            if seed == middle:
                ax.plot(t, line, lw=1.6, color="C3", zorder=3, label=f"seed {seed} (median energy)")
            else:
                first = "other seeds" not in ax.get_legend_handles_labels()[1]
                ax.plot(t, line, lw=0.7, color="0.55", alpha=0.6, label="other seeds" if first else None)

    if profiles.two_d:
        fig = Figure(figsize=(10, 4), layout="constrained")
        field_ax, line_ax = fig.subplots(1, 2)
        image = field_ax.imshow(profiles.of(middle)[1], origin="lower", extent=(0, 1, 0, 1), cmap="RdBu_r")  # (ny, nx)
        field_ax.set(xlabel="x", ylabel="y", title=f"{du}, seed {middle} (median energy)")
        field_ax.axvline(0.5, color="k", lw=0.6, ls=":")
        fig.colorbar(image, ax=field_ax, shrink=0.8)
        xs = profiles.axes["x"]
        centre = int(np.argmin(np.abs(xs - 0.5)))
        curves(line_ax, profiles.axes["y"], profiles.du[:, :, centre])  # (K, ny): the column x = 1/2
        line_ax.set(xlabel="y", ylabel=du, title=f"{du} along y at x = {xs[centre]:.3g}, every seed")
        line_ax.legend(fontsize=8, loc="upper right")
    else:  # a fixed layout: the constrained one took half of a tiny trial's time to draw (0.15 of 0.3 s)
        fig = Figure(figsize=(7, 5))
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.1, top=0.92, hspace=0.12)
        u_ax, du_ax = fig.subplots(2, 1, sharex=True)
        curves(u_ax, profiles.axes["x"], profiles.u)
        u_ax.set(ylabel="u")
        u_ax.legend(fontsize=8, loc="upper right")
        curves(du_ax, profiles.axes["x"], profiles.du)
        du_ax.axhline(0, color="grey", lw=0.5)
        du_ax.set(xlabel="x", ylabel=du)
        if np.nanmax(np.abs(profiles.du)) < 1.5:
            du_ax.set_ylim(-1.5, 1.5)
    fig.suptitle(f"{title}: {len(profiles.seeds)} seeds", fontsize=10)
    return _png(fig)
