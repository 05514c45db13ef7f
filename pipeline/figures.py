"""A seed's profile figure (the paper's panels: u and u_x in 1D, the u_y field in 2D), as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drm.measure import Measurements


def profile_figure(m: Measurements, k: int, title: str, path: Path) -> Path:
    """Draw member k's profile to `path` (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "y" in m.grid:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
        extent = (0, 1, 0, 1)
        for ax, field, name in ((axes[0], m.profile_u[k], "u"), (axes[1], m.profile_du[k], "u_y")):
            image = ax.imshow(field, origin="lower", extent=extent, cmap="RdBu_r" if name == "u_y" else "viridis")
            ax.set(xlabel="x", ylabel="y", title=name)
            fig.colorbar(image, ax=ax, shrink=0.8)
    else:
        fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True, constrained_layout=True)
        x = m.grid["x"]
        axes[0].plot(x, m.profile_u[k], lw=1)
        axes[0].set(ylabel="u")
        axes[1].plot(x, m.profile_du[k], lw=0.8)
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set(xlabel="x", ylabel="u_x", ylim=(-1.5, 1.5) if np.nanmax(np.abs(m.profile_du[k])) < 1.5 else None)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
