"""Empirical NTK spectra at initialisation (the paper's section 3.2 and eq. 13).

For a network u(x; θ) at its initial θ and N points x_1..x_N, the scalar kernel is
Θ_ij = ∇θ u(x_i) · ∇θ u(x_j), and the block kernel of (u, u_x) stacks the Jacobians of u and of
its derivative along the oscillation axis (x in 1D; y, along x = 0.5, in 2D):
Θ = [J_u; J_ux] [J_u; J_ux]^T. Their eigenvalues, sorted, decay like k^-α; α is fitted by least
squares on log λ_k against log k over a stated range of k. The paper's O(k^-2) claim is for the
map onto the circle; this measures what a finite network at initialisation does.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from drm.config import TrainConfig
from drm.train import build_model


@dataclass(frozen=True)
class Spectrum:
    kernel: str  # "u" or "u,u_x" ("u,u_y" in 2D)
    fourier: int | None
    eigenvalues: np.ndarray  # descending
    alpha: float  # fitted decay exponent: λ_k ~ k^-alpha
    fit_from: int
    fit_to: int


def grid_points(dim: int, n: int) -> torch.Tensor:
    """N points: the cell midpoints of [0, 1] (1D), or of the line x = 0.5 along y (2D)."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return t[:, None] if dim == 1 else torch.stack([torch.full_like(t, 0.5), t], dim=1)


def jacobians(config: TrainConfig, points: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(J_u, J_ud): Jacobians (N, P) of u and of its derivative along the oscillation axis, float64."""
    config = config.resolve()
    model = build_model(config, [seed], "cpu", torch.float64)
    params = [p for p in model.parameters()]
    axis = points.shape[1] - 1
    jet = model.jet(points[None])
    outputs = torch.cat([jet.u[0], jet.grad[0, :, axis]])  # (2N,)
    rows = []
    for k in range(outputs.numel()):
        grads = torch.autograd.grad(outputs[k], params, retain_graph=k < outputs.numel() - 1)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    n = points.shape[0]
    return jac[:n], jac[n:]


def gram(*jacs: torch.Tensor) -> np.ndarray:
    """The NTK Gram matrix of stacked Jacobians, J J^T (symmetric by construction)."""
    j = torch.cat(jacs)
    g = (j @ j.T).numpy()
    return (g + g.T) / 2


def decay_exponent(eigenvalues: np.ndarray, fit_from: int, fit_to: int) -> float:
    """α of λ_k ~ k^-α (k from 1), least squares over fit_from <= k <= fit_to, λ above round-off only."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    k = np.arange(1, lam.size + 1)
    use = (k >= fit_from) & (k <= fit_to) & (lam > lam[0] * 1e-13)
    if use.sum() < 2:
        return math.nan
    slope = np.polyfit(np.log(k[use]), np.log(lam[use]), 1)[0]
    return float(-slope)


def spectra(problem: str, depth: int, width: int, fourier: int | None, points: int, seed: int = 0,
            fit: tuple[int, int] | None = None) -> list[Spectrum]:
    """The scalar and block kernels' spectra with the map (when given) and without it."""
    fit_from, fit_to = fit or (2, max(3, points // 8))
    out = []
    for i in dict.fromkeys([None, fourier]):
        config = TrainConfig(problem=problem, depth=depth, width=width, fourier=i)
        x = grid_points(config.dim, points)
        j_u, j_d = jacobians(config, x, seed)
        name = "u,u_x" if config.dim == 1 else "u,u_y"
        for kernel, matrix in (("u", gram(j_u)), (name, gram(j_u, j_d))):
            lam = np.linalg.eigvalsh(matrix)[::-1]
            out.append(Spectrum(kernel, i, lam, decay_exponent(lam, fit_from, fit_to), fit_from, fit_to))
    return out


def spectrum_table(found: list[Spectrum]) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"kernel": s.kernel, "fourier": "none" if s.fourier is None else s.fourier,
                          "k": np.arange(1, s.eigenvalues.size + 1), "eigenvalue": s.eigenvalues})
            for s in found
        ]
    )


def decay_table(found: list[Spectrum]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"kernel": s.kernel, "fourier": "none" if s.fourier is None else s.fourier, "alpha": s.alpha,
          "fit_from": s.fit_from, "fit_to": s.fit_to, "lambda_1": s.eigenvalues[0]} for s in found]
    )


def spectrum_png(found: list[Spectrum], title: str) -> bytes:
    """Log-log eigenvalues (normalised by λ_1) of every kernel, with the fitted range shaded."""
    import seaborn as sns
    from matplotlib.figure import Figure

    table = spectrum_table(found)
    table["normalised"] = table["eigenvalue"] / table.groupby(["kernel", "fourier"])["eigenvalue"].transform("max")
    table = table[table["normalised"] > 1e-16]
    table["map"] = table["fourier"].map(lambda i: "none" if i == "none" else f"i = {i}")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kernel in zip(axes, table["kernel"].unique()):
        mine = table[table["kernel"] == kernel]
        sns.lineplot(data=mine, x="k", y="normalised", hue="map", ax=ax, lw=1.2)
        k = np.arange(1, int(mine["k"].max()) + 1)
        ax.plot(k, k**-2.0, color="grey", ls=":", lw=1, label="k^-2")
        ax.axvspan(found[0].fit_from, found[0].fit_to, color="grey", alpha=0.1, label="fitted range")
        for s in found:
            if s.kernel == kernel:
                ax.plot([], [], " ", label=f"α = {s.alpha:.2f} ({'none' if s.fourier is None else f'i = {s.fourier}'})")
        ax.set(xscale="log", yscale="log", xlabel="k", ylabel="λ_k / λ_1", title=f"kernel of ({kernel})")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
