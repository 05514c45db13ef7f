"""What a trained member is worth: its energy by quadrature, its transitions and bands, its profiles.

energy = I(u) of the problem (with its ε term, without the penalty) by the composite trapezoid
rule on a fine grid (1D: 20,001 nodes; 2D: 257² nodes), not the last Monte Carlo loss.
transitions = sign changes of u_x (1D), of u_y along y at x = 0.5 (2D), with a hysteresis band.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from drm.config import TrainConfig
from drm.metrics import count_bands, count_transitions, trapezoid_weights
from drm.network import PackedMLP
from drm.problems import Problem, get_problem

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


Fields = Callable[[Tensor], tuple[Tensor, Tensor, "Tensor | None"]]


def quadrature_energy(problem: Problem, epsilon: float | Tensor, fields: Fields, dtype: torch.dtype = torch.float64,
                      device: str | torch.device = "cpu") -> Tensor:
    """I(u) = ∫_D W(x, u, ∇u, u_2) dx by the composite trapezoid rule on the measurement grid.

    `fields(points (n, d))` returns u (K, n), ∇u (K, n, d) and u_2 (K, n) (None when ε = 0) of K
    functions; returns their energies (K,). The grid is GRID_1D nodes on [0, 1], GRID_2D² on [0, 1]².
    """
    t = torch.linspace(0, 1, GRID_1D if problem.dim == 1 else GRID_2D, dtype=dtype, device=device)
    w = torch.as_tensor(trapezoid_weights(len(t)), dtype=dtype, device=device)
    if problem.dim == 1:
        points, weights = t[:, None], w
    else:
        yy, xx = torch.meshgrid(t, t, indexing="ij")  # (ny, nx): y along axis 0
        points, weights = torch.stack([xx, yy], dim=-1).reshape(-1, 2), (w[:, None] * w[None, :]).reshape(-1)
    u, grad, u_2 = fields(points)
    return (problem.density(u, grad, u_2, epsilon) * weights).sum(dim=1)


def measure(model: PackedMLP, config: TrainConfig | list[TrainConfig]) -> Measurements:
    """Energy, boundary RMS, transitions (and in 2D wall transitions and bands) of every member.

    `config` may be one configuration per member (a mixed pack: each its own frequency and ε).
    """
    configs = [config.resolve()] * model.K if isinstance(config, TrainConfig) else [c.resolve() for c in config]
    config = configs[0]
    problem = get_problem(config.problem)
    p = next(model.parameters())
    epsilons = sorted({c.epsilon for c in configs})
    epsilon: float | Tensor = epsilons[0]
    if len(epsilons) > 1:
        epsilon = torch.tensor([c.epsilon for c in configs], dtype=p.dtype, device=p.device)[:, None]
    second_axis = problem.oscillation_axis if epsilons[-1] > 0 else None
    tau = config.transition_threshold
    on_grid: dict[str, Tensor] = {}

    def fields(points: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        on_grid["u"], on_grid["grad"], u_2 = _evaluate(model, points, second_axis)
        return on_grid["u"], on_grid["grad"], u_2

    energy = quadrature_energy(problem, epsilon, fields, p.dtype, p.device).cpu().numpy()
    u, grad = on_grid["u"].cpu().numpy(), on_grid["grad"].cpu().numpy()  # on the quadrature grid
    boundary_l2 = _rms_on_boundary(model, problem.dim, p)
    if problem.dim == 1:
        u_x = grad[..., 0]
        transitions = count_transitions(u_x, tau)
        per_period = None
        if config.fourier is not None and config.fourier_map == "sincos":
            # sin(2^i π x) has 2^(i-1) periods on [0, 1]; u inherits them.
            per_period = transitions / 2.0 ** (np.array([c.fourier for c in configs]) - 1.0)
        return Measurements(
            energy=energy,
            boundary_l2=boundary_l2,
            transitions=transitions,
            transitions_per_period=per_period,
            transitions_wall=None,
            bands=None,
            grid={"x": np.linspace(0, 1, GRID_1D)},
            profile_u=u,
            profile_du=u_x,
        )
    K, n = model.K, GRID_2D
    u_y = grad[..., 1].reshape(K, n, n)  # (K, ny, nx)
    line_y = torch.linspace(0, 1, LINE_2D, dtype=p.dtype, device=p.device)

    def line_count(x0: float) -> np.ndarray:
        points = torch.stack([torch.full_like(line_y, x0), line_y], dim=1)  # (LINE_2D, 2)
        return count_transitions(_evaluate(model, points, None)[1][..., 1].cpu().numpy(), tau)

    walls = np.stack([line_count(x0) for x0 in WALL_LINES])  # (2, K)
    return Measurements(
        energy=energy,
        boundary_l2=boundary_l2,
        transitions=line_count(0.5),
        transitions_per_period=None,
        transitions_wall=np.median(walls, axis=0),
        bands=count_bands(u_y, tau),
        grid={"x": np.linspace(0, 1, n), "y": np.linspace(0, 1, n)},
        profile_u=u.reshape(K, n, n),
        profile_du=u_y,
    )
