"""A seed's profile figure (the paper's panels: u and u_x in 1D, the u_y field in 2D), as PNG bytes.

Drawn from the seed's rows of the profiles table, with matplotlib's object API (no pyplot state),
so that it is safe in a thread and needs no display.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa


def profile_png(profile: pa.Table, title: str, du: str = "u_x") -> bytes:
    """One seed's profile rows (x, y, u, du) drawn as a PNG; `du` names the derivative (u_x, u_y)."""
    from matplotlib.figure import Figure

    x = profile.column("x").to_numpy()
    u = profile.column("u").to_numpy()
    derivative, du = du, profile.column("du").to_numpy()
    two_d = profile.column("y").null_count == 0
    if two_d:
        nx = np.unique(x).size
        fig = Figure(figsize=(9, 4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, field, name in ((axes[0], u, "u"), (axes[1], du, derivative)):
            image = ax.imshow(field.reshape(-1, nx), origin="lower", extent=(0, 1, 0, 1), cmap="viridis" if name == "u" else "RdBu_r")
            ax.set(xlabel="x", ylabel="y", title=name)
            fig.colorbar(image, ax=ax, shrink=0.8)
    else:
        fig = Figure(figsize=(7, 5), layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
        axes[0].plot(x, u, lw=1)
        axes[0].set(ylabel="u")
        axes[1].plot(x, du, lw=0.8)
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set(xlabel="x", ylabel=derivative)
        if np.nanmax(np.abs(du)) < 1.5:
            axes[1].set_ylim(-1.5, 1.5)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def profile_pngs(profiles: pa.Table, title: str, du: str = "u_x") -> dict[int, bytes]:
    """Every seed's profile figure, keyed by seed; `du` names the derivative the profiles hold."""
    seeds = profiles.column("seed").to_numpy()
    return {
        int(seed): profile_png(profiles.filter(pa.array(seeds == seed)), f"{title} seed {seed}", du)
        for seed in np.unique(seeds)
    }
