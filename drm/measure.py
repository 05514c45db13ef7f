"""What a trained member is worth: its energy by quadrature, its transitions and bands, its profiles.

energy = I(u) of the problem (with its ε term, without the penalty) by the composite trapezoid
rule on a fine grid (1D: 20,001 nodes; 2D: 257² nodes), not the last Monte Carlo loss.
transitions = sign changes of u_x (1D), of u_y along y at x = 0.5 (2D), with a hysteresis band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from drm.config import TrainConfig
from drm.metrics import count_bands, count_transitions, trapezoid_weights
from drm.network import PackedMLP
from drm.problems import get_problem

GRID_1D = 20_001  # nodes on [0, 1]: the energy's quadrature and the counting grid
GRID_2D = 257  # nodes per side on [0, 1]²: x = 0.5 is a node
LINE_2D = 4_097  # nodes along y on the counting lines x = 0.5, 0.05, 0.95
WALL_LINES = (0.05, 0.95)
_CHUNK_ELEMENTS = 1 << 23  # bound on K · points · width per evaluation chunk


@dataclass
class Measurements:
    """Per-member results, arrays of length K, plus the profiles on the counting grid."""

    energy: np.ndarray
    boundary_l2: np.ndarray
    transitions: np.ndarray
    transitions_per_period: np.ndarray | None
    transitions_wall: np.ndarray | None
    bands: np.ndarray | None
    grid: dict[str, np.ndarray]  # 1D: x; 2D: x, y (the profile grid's axes)
    profile_u: np.ndarray  # 1D: (K, n); 2D: (K, ny, nx)
    profile_du: np.ndarray  # 1D: u_x (K, n); 2D: u_y (K, ny, nx)


@torch.no_grad()
def _evaluate(model: PackedMLP, points: Tensor, second_axis: int | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """u, ∇u, u_2 of every member at the same points (n, d): (K, n), (K, n, d), (K, n) | None."""
    K, width = model.K, model.sizes[1]
    chunk = max(64, _CHUNK_ELEMENTS // (K * width))
    us, grads, seconds = [], [], []
    for start in range(0, points.shape[0], chunk):
        x = points[start : start + chunk].expand(K, -1, -1)  # (K, n_chunk, d)
        jet = model.jet(x, None, second_axis)
        us.append(jet.u)
        grads.append(jet.grad)
        seconds.append(jet.u_2)
    u_2 = torch.cat(seconds, dim=1) if second_axis is not None else None
    return torch.cat(us, dim=1), torch.cat(grads, dim=1), u_2


def _rms_on_boundary(model: PackedMLP, dim: int, like: Tensor) -> np.ndarray:
    if dim == 1:
        ends = torch.tensor([[0.0], [1.0]], dtype=like.dtype, device=like.device)
        u = _evaluate(model, ends, None)[0]
    else:
        t = torch.linspace(0, 1, 1025, dtype=like.dtype, device=like.device)
        zero, one = torch.zeros_like(t), torch.ones_like(t)
        edges = torch.cat([torch.stack(p, dim=1) for p in ((zero, t), (one, t), (t, zero), (t, one))])
        u = _evaluate(model, edges, None)[0]
    return u.square().mean(dim=1).sqrt().cpu().numpy()


def measure(model: PackedMLP, config: TrainConfig) -> Measurements:
    """Energy, boundary RMS, transitions (and in 2D wall transitions and bands) of every member."""
    config = config.resolve()
    problem = get_problem(config.problem)
    p = next(model.parameters())
    second_axis = problem.oscillation_axis if config.epsilon > 0 else None
    tau = config.transition_threshold
    if problem.dim == 1:
        x = torch.linspace(0, 1, GRID_1D, dtype=p.dtype, device=p.device)
        u, grad, u_2 = _evaluate(model, x[:, None], second_axis)
        density = problem.density(u, grad, u_2, config.epsilon)  # (K, n)
        weights = torch.as_tensor(trapezoid_weights(GRID_1D), dtype=p.dtype, device=p.device)
        energy = (density * weights).sum(dim=1).cpu().numpy()
        u_x = grad[..., 0].cpu().numpy()
        transitions = count_transitions(u_x, tau)
        per_period = None
        if config.fourier is not None and config.fourier_map == "sincos":
            # sin(2^i π x) has 2^(i-1) periods on [0, 1]; u inherits them.
            per_period = transitions / 2.0 ** (config.fourier - 1)
        return Measurements(
            energy=energy,
            boundary_l2=_rms_on_boundary(model, 1, x),
            transitions=transitions,
            transitions_per_period=per_period,
            transitions_wall=None,
            bands=None,
            grid={"x": x.cpu().numpy()},
            profile_u=u.cpu().numpy(),
            profile_du=u_x,
        )
    t = torch.linspace(0, 1, GRID_2D, dtype=p.dtype, device=p.device)
    yy, xx = torch.meshgrid(t, t, indexing="ij")  # (ny, nx): y along axis 0
    u, grad, u_2 = _evaluate(model, torch.stack([xx, yy], dim=-1).reshape(-1, 2), second_axis)
    density = problem.density(u, grad, u_2, config.epsilon)  # (K, ny·nx)
    w1 = torch.as_tensor(trapezoid_weights(GRID_2D), dtype=p.dtype, device=p.device)
    weights = (w1[:, None] * w1[None, :]).reshape(-1)
    energy = (density * weights).sum(dim=1).cpu().numpy()
    K = model.K
    u_y = grad[..., 1].reshape(K, GRID_2D, GRID_2D).cpu().numpy()
    line_y = torch.linspace(0, 1, LINE_2D, dtype=p.dtype, device=p.device)

    def line_count(x0: float) -> np.ndarray:
        pts = torch.stack([torch.full_like(line_y, x0), line_y], dim=1)
        return count_transitions(_evaluate(model, pts, None)[1][..., 1].cpu().numpy(), tau)

    walls = np.stack([line_count(x0) for x0 in WALL_LINES])  # (2, K)
    return Measurements(
        energy=energy,
        boundary_l2=_rms_on_boundary(model, 2, t),
        transitions=line_count(0.5),
        transitions_per_period=None,
        transitions_wall=np.median(walls, axis=0),
        bands=count_bands(u_y, tau),
        grid={"x": t.cpu().numpy(), "y": t.cpu().numpy()},
        profile_u=u.reshape(K, GRID_2D, GRID_2D).cpu().numpy(),
        profile_du=u_y,
    )
