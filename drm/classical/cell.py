"""One cell of a laminate, discretised and minimised: the classical solver behind the references.

A profile with T transitions along the oscillation axis is, for a problem whose density is even in
u and in each derivative (`Problem.mirror_symmetric`), 2T mirror images of one quarter period: from
a zero of u (u = 0: the wall, or an odd mirror) to a transition (an even mirror, where the derivative
along the axis vanishes). In 2D the unit square also halves at x = 1/2. The cell is

    1D: [0, 1/(2T)]                      u = 0 at 0, free (even mirror) at the far end
    2D: [0, 1/2] × [0, 1/(2T)]           u = 0 at x = 0 and y = 0, free at x = 1/2 and y = 1/(2T)

and its energy, times the number of cells, is the energy of the whole profile. A wall with u = 0
and a free second derivative is an odd mirror exactly, so the cell's minimiser is the whole
profile's (tests/test_classical.py solves the whole interval to check it). In 2D the unknowns are
those of a laminate, u = φ(x) z(y) (`SeparableCell`).

The discretisation is the problem's own density (torch, float64) on bilinear elements (linear in
1D), taken at the elements' Gauss points, plus the regularisation ε² u_2² from second differences at
the nodes (every problem carries it so: drm.problems.base). The Hessian is recovered from a few
Hessian-vector products (the stencil's colouring, Curtis-Powell-Reid) and Newton's steps are solved
sparse, damped where the energy is not convex (Levenberg-Marquardt). Needs scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drm.problems import Problem

GAUSS = np.array([0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0)])  # two points on [0, 1], weight 1/2 each


@dataclass(frozen=True)
class CellGrid:
    """The nodes of a cell: `along` on the oscillation axis (uniform, from the zero to the transition),
    `across` the other axis in 2D (from the wall to the middle, graded toward the wall), or None."""

    along: np.ndarray
    across: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Unknowns per axis (the nodes with u = 0 left out): (n,) or (n_across, n_along)."""
        return (len(self.along) - 1,) if self.across is None else (len(self.across) - 1, len(self.along) - 1)

    @property
    def unknowns(self) -> int:
        return int(np.prod(self.shape))

    @property
    def transitions(self) -> int:
        return round(0.5 / self.along[-1])


def cell_grid(problem: Problem, transitions: int, n_along: int, n_across: int = 0) -> CellGrid:
    along = np.linspace(0.0, 0.5 / transitions, n_along + 1)
    if problem.dim == 1:
        return CellGrid(along)
    # Quadratic grading: the wall's boundary layer (about a period wide) gets the finest elements.
    return CellGrid(along, 0.5 * np.linspace(0.0, 1.0, n_across + 1) ** 2)


def cells(problem: Problem, transitions: int) -> int:
    """How many mirror images of the cell make the whole profile."""
    return 2 * transitions * (2 if problem.dim == 2 else 1)


class CellEnergy:
    """E(u) of one cell on `grid` for one ε, with its gradient and sparse Hessian (u: the unknowns, flat)."""

    def __init__(self, problem: Problem, epsilon: float, grid: CellGrid):
        self.problem, self.epsilon, self.grid = problem, float(epsilon), grid
        self._eps = torch.full((1, 1), self.epsilon, dtype=torch.float64)
        self._zero = torch.zeros((1, 1), dtype=torch.float64)
        self._along = torch.from_numpy(np.diff(grid.along))
        self._across = None if grid.across is None else torch.from_numpy(np.diff(grid.across))

    @property
    def unknowns(self) -> int:
        return self.grid.unknowns

    @property
    def cells(self) -> int:
        return cells(self.problem, self.grid.transitions)

    def _padded(self, u: torch.Tensor) -> torch.Tensor:
        """The unknowns with the zero row/column of the walls and the even mirror's ghost (along)."""
        u = u.reshape(self.grid.shape)
        u = torch.nn.functional.pad(u, (1, 0) if u.dim() == 1 else (1, 0, 1, 0))  # u = 0 at the zero ends
        return torch.cat([u, u[..., -2:-1]], dim=-1)  # ghost u_{n+1} = u_{n-1}: the transition's mirror

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        p = self._padded(u)
        return self._one_d(p) if self._across is None else self._two_d(p)

    def _w(self, u: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        x = torch.zeros((1, u.numel(), self.problem.dim), dtype=torch.float64)  # the paper's densities do not read x
        return self.problem.density(x, u.reshape(1, -1), grad.reshape(1, -1, self.problem.dim), None, self._zero)[0]

    def _regularisation(self, p: torch.Tensor, h: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
        """ε² Σ u_2² over the nodes past the zero end (the zero end's u_2 vanishes: an odd mirror)."""
        if self.epsilon == 0:
            return p.new_zeros(())
        u2 = (p[..., 2:] - 2 * p[..., 1:-1] + p[..., :-2]) / h**2  # nodes 1..n along (n: the mirror)
        return self.epsilon**2 * (u2.square() * volume).sum()

    def _one_d(self, p: torch.Tensor) -> torch.Tensor:
        h = self._along  # uniform
        nodes = p[:-1]  # 0..n
        grad = torch.diff(nodes) / h
        mid = 0.5 * (nodes[1:] + nodes[:-1])
        w = (self._w(mid, grad[:, None]) * h).sum()
        volume = torch.cat([h[:-1], h[-1:] / 2])  # the mirror node keeps half its control volume
        return w + self._regularisation(p, h[0], volume)

    def _two_d(self, p: torch.Tensor) -> torch.Tensor:
        hx, hy = self._across[:, None], self._along[None, :]
        n = p[:, :-1]  # nodes (across 0..m, along 0..n)
        a, b, c, d = n[:-1, :-1], n[1:, :-1], n[:-1, 1:], n[1:, 1:]  # corners (x, y): (0,0) (1,0) (0,1) (1,1)
        total = p.new_zeros(())
        for s in GAUSS:  # across
            for t in GAUSS:  # along
                u = (1 - s) * (1 - t) * a + s * (1 - t) * b + (1 - s) * t * c + s * t * d
                ux = ((1 - t) * (b - a) + t * (d - c)) / hx
                uy = ((1 - s) * (c - a) + s * (d - b)) / hy
                total = total + (self._w(u, torch.stack([ux, uy], dim=-1)) * (hx * hy).reshape(-1)).sum() / 4
        h_across = torch.cat([self._across, self._across.new_zeros(1)])
        volume_x = (0.5 * (h_across[:-1] + h_across[1:]))[:, None]  # nodes 1..m; the middle keeps half
        volume_y = torch.cat([hy[0, :-1], hy[0, -1:] / 2])[None, :]
        return total + self._regularisation(p[1:], hy[0, 0], volume_x * volume_y)

    def value_and_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.from_numpy(u).requires_grad_(True)
        e = self(t)
        (g,) = torch.autograd.grad(e, t)
        return float(e.detach()), g.numpy()

    def hessian(self, u: np.ndarray):
        """The sparse Hessian from one Hessian-vector product per colour of the stencil."""
        import scipy.sparse as sp

        shape = self.grid.shape
        reach = (2,) if len(shape) == 1 else (1, 2)  # how far a node's energy terms reach, per axis
        index = np.arange(int(np.prod(shape))).reshape(shape)
        colours = np.zeros(shape, dtype=np.int64)
        stride = 1
        for axis, r in enumerate(reach):
            coord = np.indices(shape)[axis]
            colours += (coord % (2 * r + 1)) * stride
            stride *= 2 * r + 1
        t = torch.from_numpy(u).requires_grad_(True)
        (grad,) = torch.autograd.grad(self(t), t, create_graph=True)
        probes = [torch.from_numpy((colours == k).reshape(-1).astype(np.float64)) for k in range(stride)]
        # Reverse over reverse (forward-mode AD would load torch's jit-scripted decompositions).
        columns = np.stack([torch.autograd.grad(grad, t, v, retain_graph=True)[0].numpy() for v in probes])  # (colours, N)
        rows, cols, vals = [], [], []
        offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, len(shape))
        coords = np.indices(shape).reshape(len(shape), -1).T
        for off in offsets:  # entry (i, j): column j's colour probe read at row i
            nb = coords + off
            inside = np.all((nb >= 0) & (nb < np.array(shape)), axis=1)
            i = index.reshape(-1)[inside]
            j = index[tuple(nb[inside].T)]
            rows.append(i)
            cols.append(j)
            vals.append(columns[colours.reshape(-1)[j], i])
        n = index.size
        return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


class SeparableCell:
    """The laminate's cell in 2D: u = φ(x) z(y), φ across (φ = 1 at the middle, which fixes the scale
    between the two factors) and z along. Its interfaces are straight, its boundary layer the one φ
    makes; on the whole cell grid u would branch toward the wall where ε allows (the laminate is not a
    local minimiser there), so the family holds it to what a laminate is. An upper bound on the optimum."""

    def __init__(self, energy: CellEnergy):
        self.energy = energy
        self.m, self.n = energy.grid.shape  # across, along

    @property
    def unknowns(self) -> int:
        return self.m - 1 + self.n

    @property
    def cells(self) -> int:
        return self.energy.cells

    def profile(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.append(theta[: self.m - 1], 1.0), theta[self.m - 1 :]

    def _u(self, theta: np.ndarray) -> np.ndarray:
        phi, z = self.profile(theta)
        return np.outer(phi, z).reshape(-1)

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        phi, z = self.profile(theta)
        e, g = self.energy.value_and_grad(self._u(theta))
        g = g.reshape(self.m, self.n)
        return e, np.concatenate([(g @ z)[:-1], g.T @ phi])

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Jᵀ H J plus the bilinear term: ∂²u_ij / ∂φ_i ∂z_j = 1 carries the gradient G."""
        import scipy.sparse as sp

        phi, z = self.profile(theta)
        u = self._u(theta)
        m, n = self.m, self.n
        j = sp.hstack([sp.kron(sp.eye(m), z[:, None]), sp.kron(phi[:, None], sp.eye(n))]).tocsc()
        h = (j.T @ (self.energy.hessian(u) @ j)).toarray()
        _, g = self.energy.value_and_grad(u)
        g = g.reshape(m, n)
        h[:m, m:] += g
        h[m:, :m] += g.T
        keep = np.r_[0 : m - 1, m : m + n]  # φ at the middle is fixed
        return h[np.ix_(keep, keep)]


@dataclass(frozen=True)
class Solved:
    energy: float  # of the whole profile (the cell's times the number of cells)
    theta: np.ndarray  # the unknowns at the minimum
    iterations: int
    converged: bool  # the gradient met the tolerance (or the energy settled in its 14th digit)


def minimise(energy: CellEnergy | SeparableCell, start: np.ndarray, tolerance: float = 1e-9, max_iterations: int = 200) -> Solved:
    """Damped Newton from `start`: a step solves (H + λ (|diag H| + 1)) p = −g; λ shrinks after a step
    that lowers the energy and grows after one that does not. Converged when no entry of the gradient,
    times √unknowns, exceeds `tolerance` × max(1, |E|), or when the energy settles in its 14th digit."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    theta = start.reshape(-1).astype(np.float64).copy()
    e, g = energy.value_and_grad(theta)
    scale = np.sqrt(max(energy.unknowns, 1))
    lam, converged, it = 1e-6, False, 0
    for it in range(1, max_iterations + 1):
        if np.abs(g).max() * scale <= tolerance * max(1.0, abs(e)):
            converged = True
            break
        h = energy.hessian(theta)
        dense = isinstance(h, np.ndarray)
        damping = np.abs(np.diagonal(h) if dense else h.diagonal()) + 1.0
        while True:
            if dense:
                step = np.linalg.solve(h + lam * np.diag(damping), -g)
            else:
                step = spla.spsolve((h + lam * sp.diags(damping)).tocsc(), -g)
            e_new, g_new = energy.value_and_grad(theta + step)
            if np.isfinite(e_new) and e_new <= e:
                break
            lam *= 10.0
            if lam > 1e12:  # no step lowers the energy: as low as this float64 grid goes
                return Solved(e * energy.cells, theta, it, True)
        settled = abs(e - e_new) <= 1e-14 * max(1.0, abs(e))
        theta, e, g = theta + step, e_new, g_new
        lam = max(lam / 10.0, 1e-12)
        if settled:
            converged = True
            break
    return Solved(e * energy.cells, theta, it, converged)
