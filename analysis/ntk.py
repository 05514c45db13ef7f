"""Empirical NTK spectra at initialisation (the paper's section 3.2 and eq. 13).

For a network u(x; θ) at its initial θ and N points x_1..x_N, the scalar kernel is
Θ_ij = ∇θ u(x_i) · ∇θ u(x_j), and the block kernel of (u, u_x) stacks the Jacobians of u and of
its derivative along the oscillation axis (x in 1D; y, along x = 0.5, in 2D):
Θ = [J_u; J_ux] [J_u; J_ux]^T. Their eigenvalues, sorted, may decay like k^-α; α is fitted by
least squares on log λ_k against log k over a stated range of k, on several seeds (the spread is
reported), and only below half the kernel's numerical rank: with i >= 2 on a uniform grid, x and
x + 2^(1-i) have the same features, so the rank is N / 2^(i-1) and the spectrum falls off a cliff
there. Whether a power law fits at all is judged (2D spectra often decay exponentially, where α
means nothing), local slopes per octave and λ_8/λ_1 are reported beside it. The paper's O(k^-2)
claim is for the map onto the circle (i = 1); this measures what a finite network at
initialisation does, against plain DRM.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from drm.config import TrainConfig
from drm.problems import Problem, get_problem
from drm.train import build_model

RANK_TOLERANCE = 1e-10  # an eigenvalue below λ_1 × this is round-off: the kernel's numerical rank ends there
RATIO_K = 8  # λ_k/λ_1 is reported at this k: a decay measure that needs no power law
POWER_LAW_R2 = 0.98  # a power law fits when a line on log-log explains this much of log λ, and beats a line on log-linear


@dataclass(frozen=True)
class Spectrum:
    kernel: str  # "u" or "u,u_x" ("u,u_y" in 2D)
    fourier: int | None
    seed: int
    eigenvalues: np.ndarray  # descending
    rank: int  # numerical rank: eigenvalues above λ_1 × RANK_TOLERANCE
    alpha: float  # fitted decay exponent: λ_k ~ k^-alpha (NaN: too few eigenvalues below rank/2)
    fit_from: int
    fit_to: int
    power_law: bool  # whether a power law describes the fitted range (else: say so, give λ_k/λ_1)
    r2_power: float
    r2_exponential: float

    @property
    def ratio(self) -> float:
        """λ_k/λ_1 at k = RATIO_K (NaN past the rank)."""
        return float(self.eigenvalues[RATIO_K - 1] / self.eigenvalues[0]) if self.rank >= RATIO_K else math.nan


def grid_points(problem: Problem, n: int) -> torch.Tensor:
    """N points (N, d): the cell midpoints of [0, 1] along the problem's oscillation axis, the other
    coordinates at 0.5 (1D: [0, 1] itself; 2D: the line x = 0.5 along y)."""
    x = torch.full((n, problem.dim), 0.5, dtype=torch.float64)
    x[:, problem.oscillation_axis] = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return x


def jacobians(config: TrainConfig, points: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(J_u, J_ud): Jacobians (N, P) of u and of its derivative along the oscillation axis, float64."""
    config = config.resolve()
    model = build_model(config, [seed], "cpu", torch.float64)
    params = [p for p in model.parameters()]
    axis = get_problem(config.problem).oscillation_axis
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


def numerical_rank(eigenvalues: np.ndarray) -> int:
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    return int(np.sum(lam > lam[0] * RANK_TOLERANCE))


def fit_range(rank: int, points: int, fit: tuple[int, int] | None) -> tuple[int, int]:
    """The k of the decay fit: from 2 (or as asked) to N/8 (or as asked), never past rank/2, where
    the spectrum of a rank-deficient kernel (x and x + 2^(1-i) share their features) bends down."""
    fit_from, fit_to = fit or (2, max(3, points // 8))
    return fit_from, min(fit_to, rank // 2)


def _line_r2(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(t, y, 1)
    residual = y - (slope * t + intercept)
    total = float(np.sum((y - y.mean()) ** 2))
    return float(slope), (1.0 - float(np.sum(residual**2)) / total) if total > 0 else 1.0


def decay_exponent(eigenvalues: np.ndarray, fit_from: int, fit_to: int) -> float:
    """α of λ_k ~ k^-α (k from 1), least squares over fit_from <= k <= fit_to, λ above round-off only."""
    return decay_fit(eigenvalues, fit_from, fit_to)[0]


def decay_fit(eigenvalues: np.ndarray, fit_from: int, fit_to: int) -> tuple[float, float, float]:
    """(α, R² of log λ on log k, R² of log λ on k) over fit_from <= k <= fit_to: the second R² is
    that of an exponential decay, which a 2D spectrum often follows, and where α means nothing."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    k = np.arange(1, lam.size + 1)
    use = (k >= fit_from) & (k <= fit_to) & (lam > lam[0] * RANK_TOLERANCE)
    if use.sum() < 3:
        return math.nan, math.nan, math.nan
    slope, r2_power = _line_r2(np.log(k[use]), np.log(lam[use]))
    _, r2_exponential = _line_r2(k[use].astype(float), np.log(lam[use]))
    return float(-slope), r2_power, r2_exponential


def local_slopes(s: Spectrum) -> list[dict]:
    """α over each octave k = 2^j .. 2^(j+1) below rank/2: a power law has them all alike."""
    out = []
    j = 1
    while 2 ** (j + 1) <= s.rank // 2:
        alpha, _, _ = decay_fit(s.eigenvalues, 2**j, 2 ** (j + 1))
        out.append({"kernel": s.kernel, "fourier": _label(s.fourier), "seed": s.seed, "k_from": 2**j, "k_to": 2 ** (j + 1), "alpha": alpha})
        j += 1
    return out


def _label(fourier: int | None) -> str | int:
    return "none" if fourier is None else fourier


def spectra(problem: str, depth: int, width: int, fourier: int | None, points: int, seeds: tuple[int, ...] = (0,),
            fit: tuple[int, int] | None = None) -> list[Spectrum]:
    """The scalar and block kernels' spectra with the map (when given) and without it, per seed."""
    out = []
    for i in dict.fromkeys([None, fourier]):
        config = TrainConfig(problem=problem, depth=depth, width=width, fourier=i)
        known = get_problem(problem)
        x = grid_points(known, points)
        name = f"u,u_{known.axis_name}"
        for seed in seeds:
            j_u, j_d = jacobians(config, x, seed)
            for kernel, matrix in (("u", gram(j_u)), (name, gram(j_u, j_d))):
                lam = np.linalg.eigvalsh(matrix)[::-1]
                rank = numerical_rank(lam)
                fit_from, fit_to = fit_range(rank, points, fit)
                alpha, r2_power, r2_exponential = decay_fit(lam, fit_from, fit_to)
                power_law = bool(r2_power >= POWER_LAW_R2 and r2_power >= r2_exponential)
                out.append(Spectrum(kernel, i, seed, lam, rank, alpha, fit_from, fit_to, power_law, r2_power, r2_exponential))
    return out


def spectrum_table(found: list[Spectrum]) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"kernel": s.kernel, "fourier": _label(s.fourier), "seed": s.seed,
                          "k": np.arange(1, s.eigenvalues.size + 1), "eigenvalue": s.eigenvalues})
            for s in found
        ]
    )


def seed_table(found: list[Spectrum]) -> pd.DataFrame:
    """One row per kernel, map and seed."""
    return pd.DataFrame(
        [{"kernel": s.kernel, "fourier": _label(s.fourier), "seed": s.seed, "alpha": s.alpha, "rank": s.rank,
          "fit_from": s.fit_from, "fit_to": s.fit_to, "power_law": s.power_law, "r2_power": s.r2_power,
          "r2_exponential": s.r2_exponential, f"lambda_{RATIO_K}_over_1": s.ratio, "lambda_1": s.eigenvalues[0]} for s in found]
    )


def decay_table(found: list[Spectrum]) -> pd.DataFrame:
    """Per kernel and map, over seeds: α's mean, sd and range, the rank, the fit range, whether every
    seed's spectrum is a power law there, and λ_k/λ_1 at k = RATIO_K."""
    rows = []
    for (kernel, fourier), part in seed_table(found).groupby(["kernel", "fourier"], sort=False):
        alpha = part["alpha"].astype(float)
        rows.append({
            "kernel": kernel, "fourier": fourier, "seeds": len(part),
            "alpha": alpha.mean(), "alpha_sd": alpha.std(ddof=1) if len(part) > 1 else math.nan,
            "alpha_min": alpha.min(), "alpha_max": alpha.max(),
            "rank": int(part["rank"].min()),
            "fit_from": int(part["fit_from"].min()), "fit_to": int(part["fit_to"].min()),
            "power_law": bool(part["power_law"].all()),
            f"lambda_{RATIO_K}_over_1": part[f"lambda_{RATIO_K}_over_1"].mean(),
            "lambda_1": part["lambda_1"].mean(),
        })
    return pd.DataFrame(rows)


def slopes_table(found: list[Spectrum]) -> pd.DataFrame:
    """Local slopes per octave, averaged over seeds."""
    rows = [r for s in found for r in local_slopes(s)]
    if not rows:
        return pd.DataFrame(columns=["kernel", "fourier", "k_from", "k_to", "alpha", "alpha_sd", "seeds"])
    table = pd.DataFrame(rows)
    return (table.groupby(["kernel", "fourier", "k_from", "k_to"], sort=False)["alpha"]
            .agg(alpha="mean", alpha_sd="std", seeds="size").reset_index())


def describe(row) -> str:
    """One line for a decay-table row: the exponent with its seed spread, or why there is none."""
    where = f"kernel ({row.kernel}), map {row.fourier}: rank {row.rank}, "
    ratio = getattr(row, f"lambda_{RATIO_K}_over_1")
    if math.isnan(row.alpha):
        return where + f"too few eigenvalues below rank/2 to fit a decay; λ_{RATIO_K}/λ_1 = {ratio:.3g}"
    spread = f" ± {row.alpha_sd:.2f} (sd over {row.seeds} seeds; {row.alpha_min:.2f}..{row.alpha_max:.2f})" if row.seeds > 1 else " (one seed)"
    law = (f"λ_k ~ k^-{row.alpha:.2f}{spread}" if row.power_law
           else f"no power law fits (the fitted α = {row.alpha:.2f}{spread} describes no straight line on log-log)")
    return where + f"{law} over k = {row.fit_from}..{row.fit_to}; λ_{RATIO_K}/λ_1 = {ratio:.3g}"


def k2_claim(decay: pd.DataFrame) -> str | None:
    """The paper's O(k^-2) for the map onto the circle (i = 1), set against plain DRM, on the scalar kernel."""
    scalar = decay[decay["kernel"] == "u"].set_index("fourier")
    if 1 not in scalar.index or "none" not in scalar.index:
        return None
    mapped, plain = scalar.loc[1], scalar.loc["none"]
    if math.isnan(mapped["alpha"]):
        return "the paper's k^-2 at i = 1: not testable here (too few eigenvalues below rank/2)"
    low, high = mapped["alpha_min"], mapped["alpha_max"]
    verdict = ("within the seeds' range" if low <= 2 <= high else f"outside the seeds' range ({low:.2f}..{high:.2f})")
    law = "" if mapped["power_law"] else "; but no power law fits with the map, so the exponent is descriptive only"
    return (f"the paper's k^-2 at i = 1: α = {mapped['alpha']:.2f} with the map against {plain['alpha']:.2f} for plain DRM; "
            f"2 lies {verdict}{law}")


def spectrum_png(found: list[Spectrum], title: str) -> bytes:
    """Log-log eigenvalues (normalised by λ_1; the seeds' mean, their range shaded) of every kernel,
    with the fitted range and the rank marked."""
    import seaborn as sns
    from matplotlib.figure import Figure

    table = spectrum_table(found)
    table["normalised"] = table["eigenvalue"] / table.groupby(["kernel", "fourier", "seed"])["eigenvalue"].transform("max")
    table = table[table["normalised"] > RANK_TOLERANCE]
    table["map"] = table["fourier"].map(lambda i: "none" if i == "none" else f"i = {i}")
    decay = decay_table(found)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kernel in zip(axes, table["kernel"].unique()):
        mine = table[table["kernel"] == kernel]
        sns.lineplot(data=mine, x="k", y="normalised", hue="map", errorbar=("pi", 100), estimator="mean", ax=ax, lw=1.2)
        k = np.arange(1, int(mine["k"].max()) + 1)
        ax.plot(k, k**-2.0, color="grey", ls=":", lw=1, label="k^-2")
        for row in decay[decay["kernel"] == kernel].itertuples():
            ax.axvspan(row.fit_from, max(row.fit_to, row.fit_from), color="grey", alpha=0.08)
            ax.axvline(row.rank, color="grey", lw=0.6, ls="--")
            law = f"α = {row.alpha:.2f}" if row.power_law else "no power law"
            ax.plot([], [], " ", label=f"{law}, rank {row.rank} ({'none' if row.fourier == 'none' else f'i = {row.fourier}'})")
        ax.set(xscale="log", yscale="log", xlabel="k", ylabel="λ_k / λ_1", title=f"kernel of ({kernel}); fitted range shaded, rank dashed")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
