"""What a trained pack is worth: every registered metric (drm.metrics) of every member, and its profiles.

energy = I(u) of the problem (with its ε term, without the penalty) by the composite trapezoid rule,
not the last Monte Carlo loss, with its estimated quadrature error: on the problem's measurement grid
(1D: 20,001 nodes; 2D: 257² nodes) against the grid half as fine, refined by doubling until the
estimate is below 0.1% of the energy or the domain's cap (1D: 160,001 nodes; 2D: 1,025²) is reached.
The counts are taken along the problem's oscillation axis (drm.problems.domains), with a hysteresis band.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from drm.config import TrainConfig
from drm.counts import frozen_step
from drm.metrics import metrics
from drm.network import PackedMLP
from drm.pack import Pack
from drm.problems import Grid, Problem
from drm.problems.domains import Domain

if TYPE_CHECKING:
    from drm.train import Curves

_CHUNK_ELEMENTS = 1 << 23  # bound on K · points · width per evaluation chunk
TOLERANCE = 1e-3  # the relative quadrature error an energy is refined to
_NODES_PER_INTERFACE = 16  # the fewest nodes per counted interface a settled counting grid holds


@dataclass
class Measurements:
    """Per-member results (`values`: metric name -> array (K,), or None where it means nothing), plus
    the profiles on the measurement grid. A metric reads as an attribute too: `m.energy`."""

    values: dict[str, np.ndarray | None]  # every registered metric
    grid: dict[str, np.ndarray]  # 1D: x; 2D: x, y (the profile grid's axes)
    profile_u: np.ndarray  # 1D: (K, n); 2D: (K, ny, nx)
    profile_du: np.ndarray  # the derivative along the oscillation axis, same shape

    def __getattr__(self, name: str) -> np.ndarray | None:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no metric or field {name!r}")


@torch.no_grad()
def evaluate(model: PackedMLP, points: Tensor, second_axis: int | None) -> tuple[Tensor, Tensor, Tensor | None]:
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


Fields = Callable[[Tensor], tuple[Tensor, Tensor, "Tensor | None"]]


def quadrature_energy(problem: Problem, epsilon: float | Tensor, fields: Fields, dtype: torch.dtype = torch.float64,
                      device: str | torch.device = "cpu") -> Tensor:
    """I(u) = ∫_D W(x, u, ∇u, u_2; ε) dx by the composite trapezoid rule on the problem's measurement grid.

    `fields(points (n, d))` returns u (K, n), ∇u (K, n, d) and u_2 (K, n) (None when ε = 0) of K
    functions; `epsilon` is one number or (K, 1); returns their energies (K,).
    """
    grid = problem.domain.quadrature(dtype, device)
    u, grad, u_2 = fields(grid.points)
    return (problem.density(grid.points[None], u, grad, u_2, _epsilon(epsilon, u_2, device)) * grid.weights).sum(dim=1)


def _epsilon(epsilon: float | Tensor, u_2: Tensor | None, device: str | torch.device) -> Tensor:
    """ε as the density takes it, (K or 1, 1) float64; refused where it is > 0 and no u_2 was given."""
    epsilon = torch.as_tensor(epsilon, dtype=torch.float64, device=device).reshape(-1, 1)
    if u_2 is None and bool((epsilon > 0).any()):
        raise ValueError("epsilon > 0 needs the second-derivative stream u_2; the fields gave none")
    return epsilon


@dataclass(frozen=True)
class Energy:
    """Energies (K,), the estimate of their quadrature error (K,, absolute) and the nodes per axis of
    the grid they were taken on."""

    value: np.ndarray
    error: np.ndarray
    nodes: np.ndarray  # (K,) each member's own: a member is measured as it would be alone


def refined_energy(problem: Problem, epsilon: float | Tensor, fields: Fields, dtype: torch.dtype = torch.float64,
                   device: str | torch.device = "cpu", *, on_grid: Tensor | None = None, refine: bool = True,
                   tolerance: float = TOLERANCE) -> Energy:
    """I(u) by the trapezoid rule with an estimate of its error, |I_h − I_2h| (the same integrand on the
    grid and on the grid half as fine: for the rule's order 2 the error of I_h is about a third of it,
    and far less once the field is resolved), never below the sum's round-off. Each member keeps the first
    grid on which its own estimate is within `tolerance` · |I_h| (so that it measures as it would alone,
    whatever its pack-mates need); while one has not and `refine`, h is halved, up to the domain's
    `max_nodes`, whose energies the others keep.

    `on_grid`: the energies already taken on the measurement grid (K,), so that they are not taken twice.
    """
    domain = problem.domain

    def on(nodes: int) -> Tensor:
        return _chunked_energy(problem, epsilon, fields, domain.quadrature(dtype, device, nodes))

    nodes = domain.nodes
    coarse = on((nodes + 1) // 2)
    fine = on_grid if on_grid is not None else on(nodes)
    value, stated = fine.cpu().numpy().copy(), fine.cpu().numpy().copy()  # in the pack's dtype
    grid = np.zeros(len(fine), dtype=np.int64)
    settled = np.zeros(len(fine), dtype=bool)
    while True:
        # Two grids can agree to the last bit in float32 while both carry the sum's round-off: the
        # estimate is never below that (unit round-off · log2 of the terms · the energy).
        roundoff = torch.finfo(fine.dtype).eps * math.log2(nodes**domain.dim) * fine.abs()
        error = torch.maximum((fine - coarse).abs(), roundoff)
        here = ((error <= tolerance * fine.abs()) | ~torch.isfinite(error)).cpu().numpy() & ~settled
        last = not refine or 2 * nodes - 1 > domain.max_nodes
        take = ~settled if last else here
        value[take], stated[take], grid[take] = fine.cpu().numpy()[take], error.cpu().numpy()[take], nodes
        settled |= take
        if settled.all():
            return Energy(value, stated, grid)
        nodes = 2 * nodes - 1
        coarse, fine = fine, on(nodes)


def _chunked_energy(problem: Problem, epsilon: float | Tensor, fields: Fields, grid: Grid) -> Tensor:
    """Σ_j w_j W(x_j, …) over the grid in chunks of points (a fine 2D grid does not fit at once): (K,)."""
    total = None
    for start in range(0, grid.points.shape[0], _QUADRATURE_CHUNK):
        x, w = grid.points[start : start + _QUADRATURE_CHUNK], grid.weights[start : start + _QUADRATURE_CHUNK]
        u, grad, u_2 = fields(x)
        part = (problem.density(x[None], u, grad, u_2, _epsilon(epsilon, u_2, x.device)) * w).sum(dim=1)
        total = part if total is None else total + part
    return total


_QUADRATURE_CHUNK = 1 << 16  # points per chunk of a refined grid


@dataclass
class View:
    """A trained pack seen on its problem's measurement grid: what a metric is computed from."""

    model: PackedMLP
    pack: Pack
    energy: Energy | None  # on the finest grid its refinement reached (None: a recount, which takes none)
    u: np.ndarray  # (K, *grid shape)
    du: np.ndarray  # the derivative along the oscillation axis, (K, *grid shape)
    loss_final: np.ndarray | None  # (K,), when a trainer gave it
    axes: dict[str, np.ndarray]  # the grid's coordinates (x; or x, y)
    threshold: float  # the hysteresis half-width τ of the counts
    domain: Domain  # where it is counted: the problem's, or a recount's other counting grid
    frozen: np.ndarray | None = None  # (K,) the step from which the curves' count held (NaN: none counted)
    domains: list[Domain] | None = None  # each member's counting grid, where it was refined for that member
    _lines: dict[tuple, object] = field(default_factory=dict)  # lines read, and what was derived from them

    @property
    def problem(self) -> Problem:
        return self.pack.problem

    @property
    def count_grid(self) -> np.ndarray:
        """Each member's counting nodes: (K,)."""
        return np.array([d.counting_nodes for d in self._members()], dtype=np.int64)

    def _members(self) -> list[Domain]:
        return self.domains or [self.domain] * self.model.K

    def count(self, offset: float, threshold: float | None = None) -> np.ndarray:
        """Each member's transitions on the counting line at `offset`, on its own counting grid: (K,)."""
        from drm.counts import count_transitions

        tau = self.threshold if threshold is None else threshold
        out = np.empty(self.model.K, dtype=np.int64)
        for d in dict.fromkeys(self._members()):
            mine = [k for k, m in enumerate(self._members()) if m == d]
            out[mine] = count_transitions(self._along(offset, d)[mine], tau)
        return out

    def lines(self, offset: float) -> list[np.ndarray]:
        """Each member's derivative along its own counting line at `offset`: K arrays, on [0, 1]."""
        return [self._along(offset, d)[k] for k, d in enumerate(self._members())]

    def interfaces(self, offset: float = 0.5) -> list[np.ndarray]:
        """Each member's interface positions on the counting line at `offset` (drm.geometry)."""
        from drm.geometry import interface_positions

        if ("interfaces", offset) not in self._lines:
            self._lines["interfaces", offset] = [
                interface_positions(g, self.threshold, np.linspace(0.0, 1.0, len(g)))[0] for g in self.lines(offset)]
        return self._lines["interfaces", offset]

    def _like(self) -> Tensor:
        return next(self.model.parameters())

    def along(self, offset: float) -> np.ndarray:
        """The derivative along the oscillation axis on the counting line at `offset` of the view's domain
        (the measurement grid itself on an interval): (K, n)."""
        return self._along(offset, self.domain)

    def _along(self, offset: float, domain: Domain) -> np.ndarray:
        if (offset, domain) not in self._lines:
            if domain.line(self.problem.oscillation_axis, offset, torch.float64, "cpu") is None and self.du.shape[1:] == (
                    domain.counting_nodes,):
                self._lines[offset, domain] = self.du.reshape(self.model.K, -1)  # an interval counted on its measurement grid
            else:
                self._lines[offset, domain] = _derivative_along(self.model, self.pack, domain, offset)
        return self._lines[offset, domain]

    def boundary_rms(self) -> np.ndarray:
        """RMS of u on the domain's boundary points: (K,)."""
        p = self._like()
        u = evaluate(self.model, self.problem.domain.edge(p.dtype, p.device), None)[0]
        return u.square().mean(dim=1).sqrt().cpu().numpy()


def _derivative_along(model: PackedMLP, pack: Pack, domain: Domain, offset: float) -> np.ndarray:
    """The derivative along the oscillation axis on `domain`'s counting line at `offset` (an interval's
    counting grid): (K, n)."""
    p = next(model.parameters())
    axis = pack.problem.oscillation_axis
    points = domain.line(axis, offset, p.dtype, p.device)
    if points is None:
        points = domain.quadrature(p.dtype, p.device).points
    return evaluate(model, points, None)[1][..., axis].cpu().numpy()


def settled_counting(model: PackedMLP, pack: Pack, threshold: float, first: np.ndarray | None = None) -> list[Domain]:
    """Each member's domain with a counting grid fine enough for its interfaces: n is doubled (2n − 1 nodes)
    until the member's count on the middle line agrees with its count on the grid twice as fine and the
    grid holds at least `_NODES_PER_INTERFACE` nodes per counted interface (two coarse grids can agree by
    aliasing), up to the domain's `max_counting_nodes`. A member keeps the coarser grid of its first pair
    that agrees (or the cap), whatever its pack-mates need.

    `first`: the derivative on the problem's own counting line, when it was evaluated already."""
    from drm.counts import count_transitions

    domain = pack.problem.domain
    current = count_transitions(first if first is not None else _derivative_along(model, pack, domain, 0.5), threshold)
    chosen: list[Domain | None] = [None] * model.K
    while 2 * domain.counting_nodes - 1 <= domain.max_counting_nodes and None in chosen:
        finer = domain.counting(2 * domain.counting_nodes - 1)
        counted = count_transitions(_derivative_along(model, pack, finer, 0.5), threshold)
        for k in np.flatnonzero((counted == current) & (domain.counting_nodes >= _NODES_PER_INTERFACE * (current + 1))):
            chosen[k] = chosen[k] or domain
        domain, current = finer, counted
    return [d or domain for d in chosen]


def view(model: PackedMLP, pack: Pack, loss_final: Tensor | None = None, refine: bool = True) -> View:
    """Evaluate the pack on its measurement grid (with u_2 where a member has ε > 0), its energies and its
    counting grid (refined where the energy's error or the count needs it, unless `refine` is False)."""
    p = next(model.parameters())
    problem = pack.problem
    grid = problem.domain.quadrature(p.dtype, p.device)
    on_grid: dict[str, Tensor] = {}

    def fields(points: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        on_grid["u"], on_grid["grad"], u_2 = evaluate(model, points, pack.second_axis)
        return on_grid["u"], on_grid["grad"], u_2

    epsilon = pack.epsilon(p.device)
    at_grid = quadrature_energy(problem, epsilon, fields, p.dtype, p.device)
    energy = refined_energy(problem, epsilon, lambda points: evaluate(model, points, pack.second_axis), p.dtype, p.device,
                            on_grid=at_grid, refine=refine)
    shape = (model.K, *grid.shape)
    u = on_grid["u"].cpu().numpy().reshape(shape)
    du = on_grid["grad"][..., problem.oscillation_axis].cpu().numpy().reshape(shape)
    last = None if loss_final is None else loss_final.detach().cpu().numpy()
    seen = View(model, pack, energy, u, du, last, grid.axes, pack.config.transition_threshold, problem.domain)
    if refine:  # the counts on a grid fine enough for each member's interfaces
        seen.domains = settled_counting(model, pack, seen.threshold, seen.along(0.5))
        seen._lines.clear()
    return seen


def counting_view(model: PackedMLP, pack: Pack, threshold: float, count_grid: int | None = None) -> View:
    """The pack seen for its counts alone (no energy): at hysteresis half-width `threshold`, on lines of
    `count_grid` nodes (1D: a grid of that many nodes; default: the problem's counting grid)."""
    p = next(model.parameters())
    domain = pack.problem.domain if count_grid is None else pack.problem.domain.counting(count_grid)
    grid = domain.quadrature(p.dtype, p.device)
    u, grad, _ = evaluate(model, grid.points, pack.second_axis)  # as `view` evaluates it: the same bits
    shape = (model.K, *grid.shape)
    du = grad[..., pack.problem.oscillation_axis].cpu().numpy().reshape(shape)
    return View(model, pack, None, u.cpu().numpy().reshape(shape), du, None, grid.axes, threshold, domain)


def measure(model: PackedMLP, config: TrainConfig | list[TrainConfig] | Pack, loss_final: Tensor | None = None,
            refine: bool = True, history: Curves | None = None) -> Measurements:
    """Every metric registered for the problem (drm.metrics) of every member, and the profiles.

    `config` may be one configuration per member (a mixed pack: each its own frequency and ε), or the
    Pack; `loss_final` (K,): the trainer's last loss, recorded as `loss_final`. `refine` False keeps the
    energy on the measurement grid, with its error estimate (a sweep's checkpoints). `history`: the
    trainer's curves, whose counts give `count_frozen_step`.
    """
    pack = config if isinstance(config, Pack) else Pack.of(config, model.seeds)
    v = view(model, pack, loss_final, refine)
    if history is not None:
        counted = history.transitions >= 0  # (n, K): points a 0.1 checkpoint logged uncounted are left out
        frozen = np.array([frozen_step(history.steps[counted[:, k]], history.transitions[counted[:, k], k:k + 1])[0]
                           for k in range(model.K)], dtype=float)
        v.frozen = np.where(frozen >= 0, frozen, np.nan)
    values = {m.name: m.compute(v) if m.applies(pack.problem) else None for m in metrics()}
    return Measurements(values=values, grid=v.axes, profile_u=v.u, profile_du=v.du)
